"""Staff pages of calls that are not the admin's own: a call's recording."""

from __future__ import annotations

import logging

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calls import telephony
from calls.models import Call

logger = logging.getLogger(__name__)


@require_GET
@staff_member_required
def recording(request: HttpRequest, call_id: int) -> HttpResponse:
    """A call's recording, fetched from Twilio for staff who may view calls: recordings
    are never public, and never cached on the way."""
    if not request.user.has_perm("calls.view_call"):
        raise PermissionDenied
    call = get_object_or_404(Call, pk=call_id)
    if not call.recording_url:
        raise Http404(_("This call has no recording."))
    try:
        audio = telephony.recording_audio(call.recording_url)
    except telephony.TelephonyRejected as error:
        logger.warning("Recording of call %s not available: %s", call.pk, error)
        raise Http404(_("The recording is not available.")) from error
    except telephony.TelephonyUnavailable as error:
        logger.warning("Recording of call %s: Twilio unavailable: %s", call.pk, error)
        return HttpResponse(_("Twilio is not answering; try again shortly."), status=503)
    response = HttpResponse(audio.content, content_type=audio.content_type)
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = f'inline; filename="call-{call.pk}-recording"'
    return response
