"""A call's recording at the carrier: its audio, and its deletion.

The platform keeps only a reference to a recording (`Call.recording_sid`, `recording_url`,
`recording_seconds`); the audio stays with the carrier (Twilio's Recording resource, or the
sandbox carrier's store). Data-subject export and erasure, and retention, go through here.
"""

from __future__ import annotations

import logging
import re

from calls import telephony
from calls.models import Call

logger = logging.getLogger(__name__)

# A recording's SID, as the last part of its RecordingUrl names it.
RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")


class RecordingUnavailable(Exception):
    """The carrier did not answer (timeout, 5xx, 429): try again later."""


def fetch_recording_audio(call: Call) -> tuple[bytes, str] | None:
    """The audio of `call`'s recording and its media type; None when the call has none
    or the carrier no longer has it (404). Raises RecordingUnavailable, and
    TelephonyRejected when the carrier refuses for good (bad credentials, say)."""
    sid = recording_sid(call)
    try:
        if sid:
            audio = telephony.recording_media(sid=sid)
        elif call.recording_url:
            audio = telephony.recording_audio(call.recording_url)
        else:
            return None
    except telephony.TelephonyUnavailable as error:
        raise RecordingUnavailable(str(error)) from error
    except telephony.TelephonyRejected as error:
        if error.is_not_found:
            return None
        raise
    return audio.content, audio.content_type


def delete_recording(call: Call) -> bool:
    """Delete `call`'s recording at the carrier (one already gone counts as deleted) and
    blank its reference on the call; False when the call had none. Raises
    RecordingUnavailable (the reference is kept, to try again), and TelephonyRejected when
    the carrier refuses for good."""
    if not (call.recording_sid or call.recording_url):
        return False
    sid = recording_sid(call)
    if sid:
        try:
            deleted = telephony.delete_recording(sid=sid)
        except telephony.TelephonyUnavailable as error:
            raise RecordingUnavailable(str(error)) from error
        if not deleted:
            logger.info("Call %s: recording %s was already gone", call.pk, sid)
    else:
        logger.warning("Call %s: its recording names no SID; only the reference goes", call.pk)
    call.recording_sid = ""
    call.recording_url = ""
    call.recording_seconds = None
    call.save(update_fields=["recording_sid", "recording_url", "recording_seconds", "updated_at"])
    return True


def recording_sid(call: Call) -> str:
    """The SID of `call`'s recording: its own, or the one its RecordingUrl ends with."""
    if call.recording_sid:
        return call.recording_sid
    last = call.recording_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".mp3")
    return last if RECORDING_SID.fullmatch(last) else ""
