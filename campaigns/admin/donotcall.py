"""The staff console's do-not-call pages: the list, its search and the bulk add."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from audit.admin_log import AuditedAdminMixin
from campaigns import services
from campaigns.admin.phones import _phone_in, _phone_part
from campaigns.forms import DoNotCallBulkForm, DoNotCallForm
from campaigns.models import DoNotCall

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


@admin.register(DoNotCall)
class DoNotCallAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = DoNotCallForm
    list_display = ["phone", "scope", "source", "origin", "reason", "created_by", "created_at"]
    list_filter = ["source", ("partner", admin.EmptyFieldListFilter), "partner"]
    list_select_related = ["partner", "created_by"]
    search_fields = ["phone", "reason"]
    search_help_text = _("A phone number in any format, or words of the reason.")
    show_full_result_count = False
    autocomplete_fields = ["partner"]
    # Where an entry came from is what it records: staff add entries as staff.
    readonly_fields = ["source", "origin", "created_by", "created_at"]
    change_list_template = "admin/campaigns/donotcall/change_list.html"

    @admin.display(description=_("scope"), ordering="partner__name")
    def scope(self, obj: DoNotCall) -> StrOrPromise:
        if obj.partner is None:
            return _("Global")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:campaigns_partner_change", args=[obj.partner_id]),
            obj.partner.name,
        )

    @admin.display(description=_("origin"))
    def origin(self, obj: DoNotCall) -> str:
        call_id = _opt_out_call_id(obj)
        if call_id is not None:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:calls_call_change", args=[call_id]),
                gettext("Call %(id)s") % {"id": call_id},
            )
        if obj.source == DoNotCall.Source.PARTNER_API and obj.partner is not None:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:campaigns_partner_change", args=[obj.partner_id]),
                gettext("API of %(partner)s") % {"partner": obj.partner.name},
            )
        if obj.created_by is not None:
            return str(obj.created_by)
        return "-"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DoNotCall], search_term: str
    ) -> tuple[QuerySet[DoNotCall], bool]:
        # As the contacts': a number typed in any format finds its E.164 entries.
        number = _phone_in(search_term, settings.DEFAULT_PHONE_REGION)
        if number is not None:
            return queryset.filter(phone=number), False
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        part = _phone_part(search_term)
        return (found | queryset.filter(part) if part else found), may_have_duplicates

    def save_model(self, request: HttpRequest, obj: DoNotCall, form: Any, change: bool) -> None:
        # New entries go through the service, recorded as staff's.
        if change:
            super().save_model(request, obj, form, change)
            return
        entry, _created = services.add_do_not_call(
            phone=obj.phone,
            partner=obj.partner,
            source=DoNotCall.Source.STAFF,
            reason=obj.reason,
            # The admin lets in logged-in staff only (admin_view): never AnonymousUser.
            by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = entry.pk

    def get_urls(self) -> list:
        # Adding a list of numbers is a page of its own beside the add form.
        bulk = path(
            "bulk-add/",
            self.admin_site.admin_view(self.bulk_add_view),
            name="campaigns_donotcall_bulk_add",
        )
        return [bulk, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        # The list's button to the bulk page, for staff who may add entries.
        extra_context = {
            **(extra_context or {}),
            "can_bulk_add": self.has_add_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def bulk_add_view(self, request: HttpRequest) -> HttpResponse:
        """Numbers pasted or uploaded onto the global list or a partner's, as staff; the
        page reports how many were added or already listed, and every unreadable line."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        addition = None
        if request.method == "POST":
            form = DoNotCallBulkForm(request.POST, request.FILES)
            if form.is_valid():
                # The admin lets in logged-in staff only (admin_view): never AnonymousUser.
                addition = form.add_numbers(
                    by=request.user,  # type: ignore[arg-type]
                    actor=audit.Actor.from_request(request),
                )
                self.message_user(
                    request,
                    gettext(
                        "Added: %(created)d. Already on the list: %(existing)d. Lines not "
                        "read: %(invalid)d."
                    )
                    % {
                        "created": addition.created,
                        "existing": addition.existing,
                        "invalid": len(addition.invalid),
                    },
                    messages.WARNING if addition.invalid else messages.SUCCESS,
                )
                # A fresh box for the next list, onto the same list.
                form = DoNotCallBulkForm(
                    initial={
                        name: form.cleaned_data[name]
                        for name in ("scope", "partner", "reason", "region")
                    }
                )
        else:
            form = DoNotCallBulkForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Add numbers to the do-not-call list"),
            "subtitle": None,
            "form": form,
            "addition": addition,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/campaigns/donotcall/bulk_add.html", context)


# calls.outcomes.opt_out writes "call <id> (<campaign>): <how>" as an opt-out's reason.
_OPT_OUT_CALL = re.compile(r"^call (\d+)\b")


def _opt_out_call_id(entry: DoNotCall) -> int | None:
    if entry.source != DoNotCall.Source.OPT_OUT:
        return None
    match = _OPT_OUT_CALL.match(entry.reason)
    return int(match[1]) if match else None
