"""Serving rendered clips to Twilio's <Play> (and to staff's audio players)."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from voices.models import SpeechClip

# A clip's audio never changes for its token: caches may keep it for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"


@require_safe
def clip_audio(request: HttpRequest, token: str) -> HttpResponse:
    """The audio of a ready clip; 404 for unknown tokens and clips not (yet) rendered."""
    clip = SpeechClip.objects.filter(token=token, status=SpeechClip.Status.READY).first()
    if clip is None:
        raise Http404
    etag = f'"{clip.key}"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = FileResponse(clip.audio.open("rb"), content_type=clip.content_type)
        response["Content-Length"] = str(clip.size_bytes)
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    response["Last-Modified"] = http_date(clip.updated_at.timestamp())
    return response
