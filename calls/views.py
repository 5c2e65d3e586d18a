"""Calls over the web: the partner API's calls and staff's page of a call's recording.

A recording is fetched from Twilio with the account's credentials for whoever may hear it
(``recording_response``): recordings are never public, and never cached on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from callcenter.access import partner_of
from callcenter.api import Pagination, ScopedViewSet
from callcenter.exports import (
    EXPORT_ACTION,
    EXPORT_FORMAT_PARAMETER,
    ExportViewMixin,
    export_filename,
    export_response,
    export_responses,
    negotiated_format,
)
from calls import telephony
from calls.costs import call_costs
from calls.exports import call_table
from calls.filters import CallFilter
from calls.models import Call
from calls.serializers import CallDetailSerializer, CallSerializer

logger = logging.getLogger(__name__)


def recording_response(call: Call) -> HttpResponse:
    """The recording of ``call`` as an audio response, fetched from Twilio now.

    Raises Http404 when the call has none or Twilio will not give it, and
    TelephonyUnavailable when Twilio is not answering (each caller says so its own way).
    """
    if not call.recording_url:
        raise Http404(_("This call has no recording."))
    try:
        audio = telephony.recording_audio(call.recording_url)
    except telephony.TelephonyRejected as error:
        logger.warning("Recording of call %s not available: %s", call.pk, error)
        raise Http404(_("The recording is not available.")) from error
    except telephony.TelephonyUnavailable as error:
        logger.warning("Recording of call %s: Twilio unavailable: %s", call.pk, error)
        raise
    response = HttpResponse(audio.content, content_type=audio.content_type)
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = f'inline; filename="call-{call.pk}-recording"'
    return response


@require_GET
@staff_member_required
def recording(request: HttpRequest, call_id: int) -> HttpResponse:
    """A call's recording, for staff who may view calls."""
    if not request.user.has_perm("calls.view_call"):
        raise PermissionDenied
    call = get_object_or_404(Call, pk=call_id)
    try:
        return recording_response(call)
    except telephony.TelephonyUnavailable:
        return HttpResponse(_("Twilio is not answering; try again shortly."), status=503)


# --- Partner API -------------------------------------------------------------------------


class CallCursorPagination(CursorPagination):
    """Newest first, by an opaque cursor: pages stay stable while calls keep coming in."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = Pagination.max_page_size


class TwilioUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = gettext_lazy("Twilio is not answering; try again shortly.")
    default_code = "telephony_unavailable"


class AudioContentNegotiation(DefaultContentNegotiation):
    """The recording answers with audio whatever the client accepts (a player asks for
    ``audio/*``, which no renderer offers: 406 otherwise); its errors answer in JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


RECORDING_DESCRIPTION = gettext_lazy(
    "The call's audio, fetched from Twilio for the call's partner and staff: MP3 "
    "(audio/mpeg), or WAV from the sandbox carrier. Not cached; 404 when the call has no "
    "recording (its recording_url is null) or Twilio no longer has it."
)


class CallExportSerializer(serializers.Serializer):
    transcript = serializers.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "With each call's transcript in one more column: a line per turn, “speaker: words”."
        ),
    )


EXPORT_DESCRIPTION = gettext_lazy(
    "Every call the list's filters select (not a page: all of them), newest first, as a "
    "CSV or XLSX file: a row a call with its contact, times, status, each outcome field "
    "(a column each), cost in three parts and, with transcript=1, its transcript. Choose "
    "the file with format (csv, the default, or xlsx), a suffix (export.xlsx) or the Accept "
    "header. CSV is streamed as it is read, whatever its size; XLSX is written whole "
    "before it is sent, so a large one takes a while to start. Column headers are in the "
    "request's language (Accept-Language); times are UTC. Text a spreadsheet could take "
    "for a formula (starting with =, +, -, @, tab or carriage return) is prefixed with ' "
    "in CSV (so phones read '+34600000000) and written as text in XLSX."
)


@extend_schema_view(
    list=extend_schema(
        summary=gettext_lazy("List calls"),
        description=gettext_lazy(
            "Newest first, by cursor: follow `next` until it is null. Each call without its "
            "transcript; filter by campaign, contact (its history), direction, status, how "
            "it was answered, outcome and time."
        ),
    ),
    retrieve=extend_schema(
        summary=gettext_lazy("A call"),
        description=gettext_lazy(
            "With its transcript (each turn's speaker, text and timings), outcome, summary, "
            "price and a link to its recording."
        ),
    ),
)
class CallViewSet(ExportViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The partner's calls, read-only: one attempt each, from dial to hang-up, and the
    calls contacts made to our numbers (``direction`` inbound)."""

    partner_lookup = "campaign__partner"
    serializer_class = CallSerializer
    pagination_class = CallCursorPagination
    filterset_class = CallFilter
    queryset = Call.objects.select_related("contact")

    def get_queryset(self) -> QuerySet[Call]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("turns")
        return queryset

    def get_serializer_class(self) -> type[CallSerializer]:
        return CallDetailSerializer if self.action == "retrieve" else CallSerializer

    # Narrower than GenericAPIView's (any rows): this viewset's rows are calls.
    def paginate_queryset(self, queryset: QuerySet[Call]) -> list[Call] | None:  # type: ignore[override]
        # The page's costs in three queries, rather than three for each call.
        page = super().paginate_queryset(queryset)
        if page is not None:
            self.costs = call_costs(page)
        return page

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "costs": getattr(self, "costs", None)}

    @extend_schema(
        summary=gettext_lazy("Export calls as CSV or XLSX"),
        description=EXPORT_DESCRIPTION,
        parameters=[EXPORT_FORMAT_PARAMETER, CallExportSerializer],
        responses=export_responses(EXPORT_DESCRIPTION),
        filters=True,
    )
    @action(detail=False, methods=["get"], **EXPORT_ACTION)
    def export(self, request: Request, format: str | None = None) -> HttpResponseBase:
        # format: a suffix (export.xlsx), already taken by the content negotiation.
        options = CallExportSerializer(data=request.query_params)
        options.is_valid(raise_exception=True)
        calls = self.filter_queryset(self.get_queryset()).order_by("-created_at", "-id")
        partner = partner_of(request)
        file_format = negotiated_format(request)
        table = call_table(
            calls=calls,
            transcript=options.validated_data["transcript"],
            with_partner=partner is None,
        )
        campaign = request.query_params.get("campaign", "")
        scope = [partner.name if partner else "", f"campaign-{campaign}" if campaign else ""]
        filename = export_filename(subject="calls", scope=scope, file_format=file_format)
        return export_response(request, table=table, file_format=file_format, filename=filename)

    @extend_schema(
        summary=gettext_lazy("A call's recording"),
        description=RECORDING_DESCRIPTION,
        responses={
            (200, "audio/mpeg"): OpenApiResponse(OpenApiTypes.BINARY, RECORDING_DESCRIPTION),
            (200, "audio/x-wav"): OpenApiResponse(OpenApiTypes.BINARY, RECORDING_DESCRIPTION),
            503: OpenApiResponse(
                {"$ref": "#/components/schemas/Error"},
                gettext_lazy("Twilio is not answering; try again shortly."),
            ),
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["get"],
        content_negotiation_class=AudioContentNegotiation,
        filter_backends=[],
        pagination_class=None,
    )
    def recording(self, request: Request, pk: str) -> HttpResponse:
        # A Django response, not DRF's: the audio is passed through, never rendered.
        try:
            return recording_response(self.get_object())
        except telephony.TelephonyUnavailable as error:
            raise TwilioUnavailable from error
