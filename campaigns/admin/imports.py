"""The staff console's import pages: the upload, an import's progress and its rejected rows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext

from audit.admin_log import AuditedAdminMixin
from campaigns import imports
from campaigns.forms import ContactImportForm
from campaigns.models import ContactImport

# The state, counts and failure are shown by the page's progress section.
IMPORT_REPORT_FIELDS = [
    "campaign",
    "file_name",
    "created_by",
    "created_at",
    "started_at",
    "finished_at",
]
# Rejected rows listed on an import's page; the downloadable report has all of them.
IMPORT_ROWS_SHOWN = 500
FINISHED_IMPORT_STATES = frozenset({ContactImport.State.DONE, ContactImport.State.FAILED})


@admin.register(ContactImport)
class ContactImportAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = ContactImportForm
    list_display = [
        "file_name",
        "campaign",
        "state",
        "processed_rows",
        "created_count",
        "merged_count",
        "error_count",
        "flagged_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "campaign__partner"]
    list_select_related = ["campaign", "created_by"]
    search_fields = ["file_name", "campaign__name"]
    autocomplete_fields = ["campaign"]
    # An import is made by the import service and then only looked at.
    actions = None
    change_form_template = "admin/campaigns/contactimport/change_form.html"

    # The stub's return type is a list or tuple of names or groups, which a list of names
    # is not to mypy (lists are invariant), though Django takes it.
    def get_fields(  # type: ignore[override]
        self, request: HttpRequest, obj: ContactImport | None = None
    ) -> list[str]:
        return ["campaign", "upload"] if obj is None else IMPORT_REPORT_FIELDS

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # The campaign page links here with ?campaign=<pk>; a value that is no key (a URL
        # typed by hand) would break the campaign chooser.
        initial = super().get_changeform_initial_data(request)
        if not str(initial.get("campaign", "")).isdigit():
            initial.pop("campaign", None)
        return initial

    def get_readonly_fields(
        self, request: HttpRequest, obj: ContactImport | None = None
    ) -> list[str]:
        return [] if obj is None else IMPORT_REPORT_FIELDS

    def has_change_permission(self, request: HttpRequest, obj: ContactImport | None = None) -> bool:
        return False  # its page is a report: nothing on it is edited by hand

    def has_delete_permission(self, request: HttpRequest, obj: ContactImport | None = None) -> bool:
        # An import being run still writes its report.
        if obj is not None and obj.state not in FINISHED_IMPORT_STATES:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ContactImport, form: Any, change: bool) -> None:
        # The import service stores the file and imports it: a small file right after
        # the commit, before the page answers (as the API imports one during the
        # request), a larger one in the background.
        upload = form.cleaned_data["upload"]
        contact_import = imports.create_import(
            campaign=obj.campaign,
            file=upload,
            # The admin lets in logged-in staff only (admin_view): never AnonymousUser.
            by=request.user,  # type: ignore[arg-type]
            run_now=upload.size <= settings.CONTACT_IMPORT_SYNC_MAX_BYTES,
        )
        obj.pk = contact_import.pk
        obj.file_name = contact_import.file_name

    def response_add(
        self, request: HttpRequest, obj: ContactImport, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The import's page is its report, whichever button was pressed.
        self.message_user(
            request,
            gettext("“%(file)s” was uploaded into %(campaign)s: how its import goes is below.")
            % {"file": obj.file_name, "campaign": obj.campaign.name},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:campaigns_contactimport_change", args=[obj.pk]))

    def get_urls(self) -> list:
        # The report's progress (polled by its page) and its rejected rows as a file.
        urls = [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="campaigns_contactimport_progress",
            ),
            path(
                "<path:object_id>/rejected-rows/",
                self.admin_site.admin_view(self.rejected_rows_view),
                name="campaigns_contactimport_rejected_rows",
            ),
        ]
        return [*urls, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ContactImport | None = None,
    ) -> HttpResponse:
        # Below the fields: the progress, followed while the import runs, and the rejected
        # rows; the add page says what the file may hold.
        if obj is None:
            context.update(
                max_size=settings.CONTACT_IMPORT_MAX_BYTES,
                show_save_and_add_another=False,
                show_save_and_continue=False,
            )
        else:
            context.update(
                progress=import_progress(obj),
                rejected_rows=list(obj.row_errors.all()[:IMPORT_ROWS_SHOWN]),
                rejected_rows_total=obj.row_errors.count(),
                rejected_rows_shown=IMPORT_ROWS_SHOWN,
                flagged_rows=list(obj.row_warnings.all()[:IMPORT_ROWS_SHOWN]),
                flagged_rows_total=obj.row_warnings.count(),
                missing_variables=sorted(obj.missing_variables.items()),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _viewable(self, request: HttpRequest, object_id: str) -> ContactImport:
        contact_import = self.get_object(request, unquote(object_id))
        if contact_import is None:
            raise Http404
        if not self.has_view_permission(request, contact_import):
            raise PermissionDenied
        return contact_import

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The import's state and counts, as JSON."""
        return JsonResponse(import_progress(self._viewable(request, object_id)))

    def rejected_rows_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every rejected row as a CSV file (UTF-8 with a byte order mark, for Excel);
        no cell can start a spreadsheet formula."""
        contact_import = self._viewable(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stem = Path(contact_import.file_name).stem or str(contact_import.pk)
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=gettext("rejected-rows-%(file)s.csv") % {"file": stem}
        )
        response.write("\ufeff")
        writer = csv.writer(response)
        writer.writerow([gettext("row"), gettext("field"), gettext("value"), gettext("message")])
        rows = contact_import.row_errors.values_list("row", "field", "value", "message")
        for row, field, value, message in rows.iterator():
            writer.writerow([row, *(_spreadsheet_safe(text) for text in (field, value, message))])
        return response


def import_progress(contact_import: ContactImport) -> dict[str, Any]:
    """What an import's page shows of its progress, and its progress view answers."""
    finished = contact_import.state in FINISHED_IMPORT_STATES
    imported = contact_import.created_count + contact_import.merged_count
    read = contact_import.processed_rows
    return {
        "state": contact_import.state,
        "state_label": str(contact_import.get_state_display()),
        "finished": finished,
        "failure_reason": contact_import.failure_reason,
        "rows_read": read,
        "total_rows": contact_import.total_rows,
        "imported": imported,
        "created": contact_import.created_count,
        "merged": contact_import.merged_count,
        "rejected": contact_import.error_count,
        "flagged": contact_import.flagged_count,
        # Shares of the rows read, for the bar (the rows to come are not counted ahead).
        "imported_percent": round(100 * imported / read, 1) if read else 0,
        "rejected_percent": round(100 * contact_import.error_count / read, 1) if read else 0,
    }


# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text
