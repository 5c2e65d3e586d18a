"""The partner API's data-subject requests: export or erase everything held about a
phone number (a partner: its own data; staff: one partner's, or every partner's)."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from audit import services as audit
from callcenter.api import Conflict, ScopedViewSet
from privacy.erasure import ErasureRefused, erase_subject
from privacy.export import request_export
from privacy.models import DataSubjectRequest
from privacy.serializers import (
    DataSubjectRequestSerializer,
    EraseInputSerializer,
    SubjectInputSerializer,
)


@extend_schema_view(
    list=extend_schema(summary=_("Data-subject requests (exports and erasures)")),
    retrieve=extend_schema(summary=_("A data-subject request")),
)
class DataSubjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Exports and erasures of the data held about a phone number. A partner sees and
    makes its own; staff see every one and act for one partner (``partner``) or all."""

    queryset = DataSubjectRequest.objects.all()
    serializer_class = DataSubjectRequestSerializer
    staff_permissions = {
        "export": "privacy.add_datasubjectrequest",
        "erase": "privacy.add_datasubjectrequest",
        "download": "privacy.view_datasubjectrequest",
    }
    filterset_fields = {"kind": ["exact"], "status": ["exact"]}

    @extend_schema(
        summary=_("Export everything held about a phone number"),
        description=_(
            "The file (a ZIP: subject.json with contacts, calls, transcripts, events, "
            "deliveries, do-not-call entries and audit entries, the recordings and the "
            "speech clips) is built in the background: follow the request until it is "
            "done, then download it (only whoever asked may)."
        ),
        request=SubjectInputSerializer,
        responses={202: DataSubjectRequestSerializer},
    )
    @action(detail=False, methods=["post"])
    def export(self, request: Request) -> Response:
        incoming = SubjectInputSerializer(data=request.data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        made = request_export(actor=audit.Actor.from_request(request), **incoming.validated_data)
        return Response(DataSubjectRequestSerializer(made).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary=_("Erase everything held about a phone number"),
        description=_(
            "Cannot be undone (confirm must be true). Contacts and calls stay as anonymous "
            "rows for the counts and costs; everything personal goes, recordings at the "
            "carrier included (pending_recordings lists those still to delete). Only the "
            "number's keyed hash is kept, so it is never called again. 409 while a call to "
            "the number or an import into its campaigns is going on."
        ),
        request=EraseInputSerializer,
        responses={200: DataSubjectRequestSerializer, 409: OpenApiResponse(OpenApiTypes.OBJECT)},
    )
    @action(detail=False, methods=["post"])
    def erase(self, request: Request) -> Response:
        incoming = EraseInputSerializer(data=request.data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(incoming.validated_data)
        data.pop("confirm")
        try:
            made = erase_subject(actor=audit.Actor.from_request(request), **data)
        except ErasureRefused as refused:
            raise Conflict(str(refused)) from refused
        return Response(DataSubjectRequestSerializer(made).data)

    @extend_schema(
        summary=_("Download an export's file"),
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        made = self.get_object()
        actor = audit.Actor.from_request(request)
        # Only whoever asked may take the file; to anyone else it does not exist.
        if (made.actor_type, made.actor_id) != (actor.type, actor.id) or not made.file:
            raise NotFound()
        return FileResponse(
            made.file.open("rb"),
            as_attachment=True,
            filename=f"data-subject-{made.pk}.zip",
            content_type="application/zip",
        )
