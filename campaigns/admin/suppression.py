"""The staff console's national suppression lists: each list's settings and live copy, and
the upload of a new copy, imported in the background, with its counts and bad lines."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.admin_log import AuditedAdminMixin
from campaigns.models import SuppressionCopy, SuppressionList
from campaigns.suppression import create_copy_import

COPY_REPORT_FIELDS = [
    "suppression_list",
    "refreshed_at",
    "file_name",
    "state",
    "lines_read",
    "good_lines",
    "bad_lines",
    "duplicate_lines",
    "entry_count",
    "failure_reason",
    "bad_lines_shown",
    "created_by",
    "created_at",
    "progress_at",
    "finished_at",
]


@admin.register(SuppressionList)
class SuppressionListAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "file_format",
        "refreshed_at",
        "age_days",
        "entry_count",
        "is_global",
        "imported_at",
        "imported_by",
    ]
    list_filter = ["kind", "is_global"]
    list_select_related = ["imported_by"]
    search_fields = ["name"]
    readonly_fields = ["refreshed_at", "entry_count", "imported_at", "imported_by"]
    fields = [
        "name",
        "kind",
        "file_format",
        "hash_input",
        "country_code",
        "is_global",
        *readonly_fields,
    ]

    @admin.display(description=_("age (days)"))
    def age_days(self, obj: SuppressionList) -> int | None:
        if obj.refreshed_at is None:
            return None
        return (timezone.localdate() - obj.refreshed_at).days


class SuppressionCopyForm(forms.ModelForm):
    """A new copy of a list: the operator's file (plain or gzip) and the date of its download."""

    # Not the model's ``file``: the import service stores the upload under a name of its own.
    upload = forms.FileField(
        label=_("file"),
        help_text=_(
            "As the operator delivers it, plain or gzip-compressed (unzip a .zip first): "
            "one number or SHA-256 digest a line. It replaces the list's live copy once read."
        ),
    )

    class Meta:
        model = SuppressionCopy
        fields = ["suppression_list", "refreshed_at"]

    def clean_refreshed_at(self) -> datetime.date:
        value: datetime.date = self.cleaned_data["refreshed_at"]
        if value > timezone.localdate():
            raise forms.ValidationError(gettext("The download's date cannot be in the future."))
        return value


@admin.register(SuppressionCopy)
class SuppressionCopyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = SuppressionCopyForm
    list_display = [
        "suppression_list",
        "refreshed_at",
        "state",
        "lines_read",
        "entry_count",
        "bad_lines",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "suppression_list"]
    list_select_related = ["suppression_list", "created_by"]
    # A copy is made by the import service and then only looked at.
    actions = None

    # The stub's return type is a list or tuple of names or groups, which a list of names
    # is not to mypy (lists are invariant), though Django takes it.
    def get_fields(  # type: ignore[override]
        self, request: HttpRequest, obj: SuppressionCopy | None = None
    ) -> list[str]:
        return ["suppression_list", "refreshed_at", "upload"] if obj is None else COPY_REPORT_FIELDS

    def get_readonly_fields(
        self, request: HttpRequest, obj: SuppressionCopy | None = None
    ) -> list[str]:
        return [] if obj is None else COPY_REPORT_FIELDS

    def has_change_permission(
        self, request: HttpRequest, obj: SuppressionCopy | None = None
    ) -> bool:
        return False  # its page is a report: nothing on it is edited by hand

    def has_delete_permission(
        self, request: HttpRequest, obj: SuppressionCopy | None = None
    ) -> bool:
        return False  # the import service replaces copies and deletes their entries

    @admin.display(description=_("first bad lines"))
    def bad_lines_shown(self, obj: SuppressionCopy) -> str:
        return format_html_join(
            "\n",
            "<div>{}{}: “{}”: {}</div>",
            (
                (f"{name}:" if name else "", line, value, reason)
                for name, line, value, reason in obj.bad_samples
            ),
        )

    def save_model(
        self, request: HttpRequest, obj: SuppressionCopy, form: Any, change: bool
    ) -> None:
        # The import service stores the file and imports it in the background.
        copy = create_copy_import(
            suppression_list=obj.suppression_list,
            refreshed_at=obj.refreshed_at,
            file=form.cleaned_data["upload"],
            # The admin lets in logged-in staff only (admin_view): never AnonymousUser.
            by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = copy.pk

    def response_add(
        self, request: HttpRequest, obj: SuppressionCopy, post_url_continue: str | None = None
    ) -> HttpResponse:
        self.message_user(
            request,
            gettext(
                "The copy of %(list)s is being imported in the background; reload this page "
                "to follow it. The live copy stays in use until it is read whole."
            )
            % {"list": obj.suppression_list},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:campaigns_suppressioncopy_change", args=[obj.pk])
        )
