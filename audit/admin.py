"""The audit trail in the staff console: read, searched, exported and verified; never
added to, changed or deleted (not even by a superuser: the product only appends)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseBase
from django.http import HttpResponseRedirect as Redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.exports import FORMATS, export_entries, partner_names
from audit.keys import typed_subject
from audit.models import Action, AuditEntry
from audit.services import verify
from callcenter.access import partner_model

# How many characters of a subject hash the list shows (the whole one is on the entry).
SUBJECT_SHOWN = 12
# The export form's parameter, set apart from the changelist's filters.
EXPORT_FORMAT_PARAM = "format"


# What an entry's page shows: every field, read only.
ENTRY_FIELDS: list[Any] = [
    "seq",
    "at",
    "action_label",
    "partner",
    "subject",
    "object_type",
    "object_id",
    "actor_type",
    "actor_id",
    "actor_name",
    "ip",
    "details_json",
    "rules_version",
    "prev_hash",
    "hash",
]


class ActionFilter(admin.SimpleListFilter):
    title = _("action")
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(Action.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action=self.value()) if self.value() else queryset


class PartnerFilter(admin.SimpleListFilter):
    """By partner: the trail keeps its id only (no foreign key), the filter names it."""

    title = _("partner")
    parameter_name = "partner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        partners = partner_model()._default_manager.order_by("name")
        return [(str(pk), name) for pk, name in partners.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(value)
        return queryset.filter(partner_id=int(value))


class AuditChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's partners named in one query (the entries hold their ids only).
        names = partner_names(entry.partner_id for entry in self.result_list)
        for entry in self.result_list:
            entry.partner_name = names.get(entry.partner_id, "")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "seq",
        "at",
        "action_label",
        "partner",
        "short_subject",
        "object",
        "actor",
        "ip",
    ]
    list_display_links = ["seq"]
    list_filter = [ActionFilter, "actor_type", PartnerFilter, ("at", admin.DateFieldListFilter)]
    search_fields = ["object_id"]
    search_help_text = _("A phone number in any format (its entries), or an object's id.")
    show_full_result_count = False
    change_list_template = "admin/audit/auditentry/change_list.html"
    fields = ENTRY_FIELDS
    readonly_fields = ENTRY_FIELDS

    # --- Read only, for everyone --------------------------------------------------------
    # The trail is appended to by audit.services alone: no permission to add, change or
    # delete an entry exists (Meta.default_permissions), and a superuser, who holds every
    # permission, is refused here too.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- The list -------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditChangeList

    @admin.display(description=_("action"), ordering="action")
    def action_label(self, entry: AuditEntry) -> str:
        return str(dict(Action.choices).get(entry.action, entry.action))

    @admin.display(description=_("partner"))
    def partner(self, entry: AuditEntry) -> str:
        if entry.partner_id is None:
            return "-"
        name = getattr(entry, "partner_name", None)
        if name is None:  # the entry's own page: one entry, one query
            name = partner_names([entry.partner_id]).get(entry.partner_id, "")
        # A partner deleted since keeps its id in the trail.
        return f"{name} ({entry.partner_id})" if name else f"#{entry.partner_id}"

    @admin.display(description=_("subject"))
    def short_subject(self, entry: AuditEntry) -> str:
        return f"{entry.subject[:SUBJECT_SHOWN]}…" if entry.subject else "-"

    @admin.display(description=_("object"))
    def object(self, entry: AuditEntry) -> str:
        if not entry.object_type:
            return "-"
        return f"{entry.object_type} {entry.object_id}".strip()

    @admin.display(description=_("actor"), ordering="actor_name")
    def actor(self, entry: AuditEntry) -> str:
        label = entry.get_actor_type_display()
        return f"{label}: {entry.actor_name}" if entry.actor_name else str(label)

    @admin.display(description=_("details"))
    def details_json(self, entry: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.details, indent=2, ensure_ascii=False))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEntry], search_term: str
    ) -> tuple[QuerySet[AuditEntry], bool]:
        # A phone number is found by its keyed hash (the trail holds no number); anything
        # else is an object's id, matched whole.
        term = search_term.strip()
        if not term:
            return queryset, False
        subject = typed_subject(term, region=settings.DEFAULT_PHONE_REGION)
        if subject is not None:
            return queryset.filter(subject=subject), False
        return queryset.filter(object_id=term), False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = {**(extra_context or {}), "export_formats": FORMATS}
        return super().changelist_view(request, extra_context)

    # --- Export and verification ------------------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            path(
                "verify/",
                self.admin_site.admin_view(self.verify_view),
                name="{}_{}_verify".format(*info),
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The list as it is filtered and searched now, as CSV or JSON Lines, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        params = request.GET.copy()
        file_format = params.pop(EXPORT_FORMAT_PARAM, ["csv"])[-1]
        if file_format not in FORMATS:
            return HttpResponseBadRequest(
                gettext("Export as %(formats)s.") % {"formats": ", ".join(FORMATS)}
            )
        # The changelist takes any parameter it does not know for a filter.
        request.GET = params  # type: ignore[assignment]  # a mutable copy, on purpose
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            changelist_url = reverse("admin:audit_auditentry_changelist")
            return Redirect(f"{changelist_url}?{ERROR_FLAG}=1")
        return export_entries(request, changelist.queryset, file_format=file_format)

    def verify_view(self, request: HttpRequest) -> TemplateResponse:
        """Walk the whole chain now: intact, or every entry where it breaks."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        count, problems = verify()
        by_seq = AuditEntry.objects.in_bulk({problem.seq for problem in problems}, field_name="seq")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Verify the audit trail"),
            "subtitle": None,
            "count": count,
            "problems": [(problem, by_seq.get(problem.seq)) for problem in problems],
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/audit/auditentry/verify.html", context)
