"""The staff console's data-subject requests: the form (export or erase a number's data)
and the history of requests, read-only (the audit trail records each one as well)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from privacy.erasure import ErasureRefused, erase_subject
from privacy.export import request_export
from privacy.forms import SubjectRequestForm
from privacy.models import DataSubjectRequest


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "partner", "actor_name", "created_at", "file_link"]
    list_filter = ["kind", "status", "partner"]
    list_select_related = ["partner"]
    change_list_template = "admin/privacy/datasubjectrequest/change_list.html"
    readonly_fields = [
        "kind",
        "status",
        "partner",
        "subject",
        "actor_type",
        "actor_id",
        "actor_name",
        "counts",
        "pending_recordings",
        "recording_attempts",
        "error",
        "created_at",
        "finished_at",
    ]
    exclude = ["file"]

    # Requests are made through the form below, never edited nor deleted.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("file"))
    def file_link(self, obj: DataSubjectRequest) -> str:
        if not obj.file:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:privacy_datasubjectrequest_download", args=[obj.pk]),
            gettext("Download"),
        )

    def get_urls(self) -> list:
        # The form and the download are pages of their own beside the list.
        return [
            path(
                "new/",
                self.admin_site.admin_view(self.request_view),
                name="privacy_datasubjectrequest_new",
            ),
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="privacy_datasubjectrequest_download",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_request": self._may_request(request)}
        return super().changelist_view(request, extra_context)

    def _may_request(self, request: HttpRequest) -> bool:
        return request.user.has_perm("privacy.add_datasubjectrequest")

    def request_view(self, request: HttpRequest) -> HttpResponse:
        """Export or erase a number's data, for one partner or every partner."""
        if not self._may_request(request):
            raise PermissionDenied
        form = SubjectRequestForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            actor = audit.Actor.from_request(request)
            if data["kind"] == form.ERASE:
                try:
                    made = erase_subject(phone=data["phone"], partner=data["partner"], actor=actor)
                except ErasureRefused as refused:
                    form.add_error(None, str(refused))
                else:
                    self.message_user(request, gettext("The number's data was erased."))
                    return HttpResponseRedirect(self._change_url(made))
            else:
                made = request_export(phone=data["phone"], partner=data["partner"], actor=actor)
                self.message_user(
                    request,
                    gettext("The export is being built: its file appears here when ready."),
                    messages.INFO,
                )
                return HttpResponseRedirect(self._change_url(made))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Data-subject request"),
            "subtitle": None,
            "form": form,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/privacy/datasubjectrequest/new.html", context)

    def _change_url(self, made: DataSubjectRequest) -> str:
        return reverse("admin:privacy_datasubjectrequest_change", args=[made.pk])

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """An export's file, for whoever asked for it only."""
        made = DataSubjectRequest.objects.filter(pk=pk).first()
        actor = audit.Actor.from_request(request)
        if (
            made is None
            or not made.file
            or (made.actor_type, made.actor_id)
            != (
                actor.type,
                actor.id,
            )
        ):
            raise Http404
        return FileResponse(
            made.file.open("rb"), as_attachment=True, filename=f"data-subject-{made.pk}.zip"
        )
