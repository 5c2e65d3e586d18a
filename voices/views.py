"""Voices over the web: rendered clips served to Twilio's <Play> (and to audio players),
and the partner API's read-only catalogue."""

from __future__ import annotations

import logging

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
)
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from callcenter import media
from callcenter.access import IsStaff
from callcenter.api import ApiViewMixin, Pagination
from voices import clips, speech
from voices.models import SpeechClip, Voice
from voices.serializers import VoiceSerializer, VoiceSyncSerializer
from voices.tasks import sync_voices_task

logger = logging.getLogger(__name__)


@require_safe
def clip_audio(request: HttpRequest, token: str) -> HttpResponseBase:
    """The audio of a ready clip; 404 for unknown tokens and clips not (yet) rendered."""
    clip = SpeechClip.objects.filter(token=token, status=SpeechClip.Status.READY).first()
    if clip is None:
        raise Http404
    etag = f'"{clip.key}"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponseBase = HttpResponseNotModified()
    else:
        try:
            audio = media.open_to_stream(clip.audio.storage, clip.audio.name or "")
        except FileNotFoundError:
            raise Http404 from None
        except media.STORAGE_ERRORS as exc:
            # The bucket does not answer: Twilio may fetch again later, the call goes on.
            logger.warning("clip %s could not be read from the media storage: %s", token, exc)
            unavailable = HttpResponse(status=503)
            unavailable["Retry-After"] = "5"
            return unavailable
        response = FileResponse(audio, content_type=clip.content_type)
        response["Content-Length"] = str(clip.size_bytes)
    response["ETag"] = etag
    response["Cache-Control"] = clips.CACHE_CONTROL
    response["Last-Modified"] = http_date(clip.updated_at.timestamp())
    return response


# --- Partner API -------------------------------------------------------------------------


class SpeechNotConfigured(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = gettext_lazy(
        "Speech is not configured (no ElevenLabs API key): there is nothing to sync from."
    )
    default_code = "speech_not_configured"


class VoiceViewSet(
    ApiViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The voices campaigns can speak with: one catalogue for every partner, kept in step
    with the ElevenLabs account (nightly, or on demand by staff)."""

    queryset = Voice.objects.all()
    serializer_class = VoiceSerializer
    pagination_class = Pagination
    filterset_fields = ["language"]

    @extend_schema(
        summary=gettext_lazy("Sync voices from ElevenLabs (staff)"),
        description=gettext_lazy(
            "Queues the catalogue sync (the nightly task) and answers at once: voices "
            "appear or change in the list when it has run. 503 when speech is not configured."
        ),
        request=None,
        responses={
            202: VoiceSyncSerializer,
            503: OpenApiResponse(
                {"$ref": "#/components/schemas/Error"}, SpeechNotConfigured.default_detail
            ),
        },
    )
    @action(detail=False, methods=["post"], permission_classes=[IsStaff], filter_backends=[])
    def sync(self, request: Request) -> Response:
        # Queued, not run here: listing the account takes a page per hundred voices, and
        # the task retries ElevenLabs' outages with backoff.
        if not speech.is_configured():
            raise SpeechNotConfigured
        # Celery's Django fixup makes every task a DjangoTask; celery-types' Task lacks it.
        sync_voices_task.delay_on_commit()  # type: ignore[attr-defined]
        return Response(
            {"message": _("The voice catalogue is being synced from ElevenLabs.")},
            status=status.HTTP_202_ACCEPTED,
        )
