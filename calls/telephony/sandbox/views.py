"""The sandbox carrier's own routes: the audio of its recordings (a sandbox call's
RecordingUrl), mounted under calls: only while it is the backend."""

from __future__ import annotations

import base64
import binascii

from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, re_path
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calls.telephony.sandbox.state import (
    ACCOUNT_SID,
    RECORDINGS_PATH,
    recording_key,
    recording_wav,
    webhook_auth_token,
)


@require_GET
def recording(request: HttpRequest, recording_sid: str) -> HttpResponse:
    """A sandbox recording: one second of silence (8 kHz, 16-bit mono WAV). Like
    Twilio's media with HTTP authentication enforced, it asks for the account's SID and
    key (the sandbox's webhook key): the platform fetches it for staff, nobody else."""
    if not _authorized(request.headers.get("Authorization", "")):
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = 'Basic realm="sandbox"'
        return response
    if cache.get(recording_key(recording_sid)) is None:
        raise Http404(_("No such sandbox recording."))
    return HttpResponse(recording_wav(), content_type="audio/x-wav")


urlpatterns: list[URLPattern] = [
    re_path(
        rf"^{RECORDINGS_PATH}(?P<recording_sid>RE[0-9a-f]{{32}})(?:\.wav)?$",
        recording,
        name="sandbox_recording",
    ),
]


def _authorized(header: str) -> bool:
    scheme, _space, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _colon, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return constant_time_compare(user, ACCOUNT_SID) and constant_time_compare(
        password, webhook_auth_token()
    )
