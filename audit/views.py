"""The audit trail in the partner API: listed, read, filtered and exported; never written
(POST, PUT, PATCH and DELETE answer 405). A partner reads its own entries only."""

from __future__ import annotations

from typing import Any

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponseBase
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.utils import extend_schema_view as schema_of
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request

from audit.exports import FORMATS, JSONL, JSONL_MEDIA_TYPE, export_entries
from audit.keys import typed_subject
from audit.models import Action, ActorType, AuditEntry
from audit.serializers import AuditEntrySerializer
from callcenter.access import partner_of
from callcenter.api import ApiViewMixin, Pagination
from callcenter.exports import (
    MEDIA_TYPES,
    CSVRenderer,
    ExportNegotiation,
    ExportViewMixin,
    FileFormat,
    FileRenderer,
)
from callcenter.filters import UtcDateTimeFilter


class JsonLinesRenderer(FileRenderer):
    """JSON Lines (one entry per line), the export's format for machines."""

    media_type = JSONL_MEDIA_TYPE
    format = JSONL


class AuditEntryFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=Action.choices)
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices)
    phone = django_filters.CharFilter(
        method="filter_phone",
        label=_("The entries about a phone number, in any format (found by its keyed hash)."),
    )
    object_type = django_filters.CharFilter(
        label=_("“app_label.model”, such as campaigns.campaign.")
    )
    object_id = django_filters.CharFilter()
    since = UtcDateTimeFilter(
        field_name="at", lookup_expr="gte", label=_("Entries at or after this moment.")
    )
    until = UtcDateTimeFilter(
        field_name="at", lookup_expr="lt", label=_("Entries before this moment.")
    )

    class Meta:
        model = AuditEntry
        fields = ["action", "actor_type", "phone", "object_type", "object_id", "since", "until"]

    def filter_phone(
        self, queryset: QuerySet[AuditEntry], name: str, value: str
    ) -> QuerySet[AuditEntry]:
        subject = typed_subject(value, region=settings.DEFAULT_PHONE_REGION)
        if subject is None:
            raise exceptions.ValidationError(
                {
                    "phone": [
                        _("“%(value)s” is not a valid phone number (region %(region)s).")
                        % {"value": value, "region": settings.DEFAULT_PHONE_REGION}
                    ]
                }
            )
        return queryset.filter(subject=subject)


EXPORT_DESCRIPTION = _(
    "Every entry the filters select (not a page: all of them), newest first, streamed: "
    "format=csv (the default; headers in the request's language, times UTC, text a "
    "spreadsheet could take for a formula prefixed with ') or format=jsonl (one JSON object "
    "per line with every field the entry's hash covers and the hash itself, so the chain "
    "can be checked again)."
)


@schema_of(
    list=extend_schema(
        summary=_("The audit trail"),
        description=_(
            "Newest first: every decision about the partner's contacts and every action on "
            "its objects, with who made it and from where. A phone number never appears: "
            "subject is its keyed hash (filter with phone=)."
        ),
    ),
    retrieve=extend_schema(summary=_("An audit entry")),
)
class AuditEntryViewSet(
    ApiViewMixin,
    ExportViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The audit trail, read only: a partner's own entries; staff (with the view
    permission of audit entries) every partner's and the platform's."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    pagination_class = Pagination
    filterset_class = AuditEntryFilter
    lookup_field = "seq"
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[AuditEntry]:
        # No foreign key to the partner (the trail outlives what it names): its id.
        queryset = super().get_queryset()
        partner = partner_of(self.request)
        return queryset if partner is None else queryset.filter(partner_id=partner.pk)

    @extend_schema(
        summary=_("Export the audit trail as CSV or JSON Lines"),
        description=EXPORT_DESCRIPTION,
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), default=FileFormat.CSV.value)
        ],
        responses={
            (200, MEDIA_TYPES[FileFormat.CSV]): OpenApiResponse(
                OpenApiTypes.BINARY, EXPORT_DESCRIPTION
            ),
            (200, JSONL_MEDIA_TYPE): OpenApiResponse(OpenApiTypes.BINARY, EXPORT_DESCRIPTION),
        },
        filters=True,
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[CSVRenderer, JsonLinesRenderer],
        content_negotiation_class=ExportNegotiation,
        pagination_class=None,
    )
    def export(self, request: Request, format: str | None = None) -> HttpResponseBase:
        # format: a suffix (export.jsonl), already taken by the content negotiation.
        entries = self.filter_queryset(self.get_queryset())
        renderer: Any = request.accepted_renderer
        return export_entries(request, entries, file_format=renderer.format)
