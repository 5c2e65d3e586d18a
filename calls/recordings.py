"""A call's recording at the carrier: when it starts, its audio, and its deletion.

A campaign that records (`Campaign.record_calls`) never records from the answer: the callee
must first hear the announcement its template makes (templates.linting.recording_problems).
The call is created without recording; `start_after_announcement` asks the carrier to
record the live call once the answer's lines (the greeting, and a scripted template's
first prompt) have been played: at the first <Gather> action (calls.flow.turn), or on a
relay call at the callee's first words, key or silence after the welcome greeting.

The platform keeps only a reference to a recording (`Call.recording_sid`, `recording_url`,
`recording_seconds`); the audio stays with the carrier (Twilio's Recording resource, or the
sandbox carrier's store). Data-subject export and erasure, and retention, go through here.
"""

from __future__ import annotations

import enum
import logging
import re

from django.utils import timezone

from calls import telephony
from calls.choices import LIVE_STATUSES
from calls.links import callback_url
from calls.models import Call, CallDirection

logger = logging.getLogger(__name__)

# A recording's SID, as the last part of its RecordingUrl names it.
RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")


class RecordingUnavailable(Exception):
    """The carrier did not answer (timeout, 5xx, 429): try again later."""


class RecordingStart(enum.StrEnum):
    """What `start_after_announcement` did."""

    # The campaign does not record, the call is not one to record (inbound, over), or it
    # was asked already (started or failed at an earlier turn).
    SKIPPED = "skipped"
    STARTED = "started"
    FAILED = "failed"  # the carrier refused or did not answer: flagged, the call goes on


def start_after_announcement(*, call_id: int) -> RecordingStart:
    """Start recording the outbound call `call_id` of a recording campaign, once: the
    announcement has been played. Claimed by a compare-and-set on the call, so a repeated
    or concurrent webhook asks the carrier once.

    A carrier that refuses (21220: the call is no longer in progress) or does not answer
    (the adapter has retried what was safe: 429, refused connections; never a 5xx or a
    timeout, after which a second request could start a second recording) leaves the
    call flagged `recording_failed`, logged; the conversation goes on unrecorded.
    """
    now = timezone.now()
    claimed = (
        Call.objects.filter(
            pk=call_id,
            campaign__record_calls=True,
            direction=CallDirection.OUTBOUND,
            status__in=LIVE_STATUSES,  # in progress, or its "answered" callback is late
            recording_started_at__isnull=True,
            recording_failed=False,
        )
        .exclude(provider_sid="")
        .update(recording_started_at=now, updated_at=now)
    )
    if not claimed:  # one query on every later turn: the hot path
        return RecordingStart.SKIPPED
    call = Call.objects.only("pk", "provider_sid").get(pk=call_id)
    try:
        sid = telephony.start_recording(
            call_sid=call.provider_sid or "", status_callback=callback_url("recording", call_id)
        )
    except (telephony.TelephonyRejected, telephony.TelephonyUnavailable) as error:
        logger.warning("Call %s: the recording did not start, the call goes on: %s", call_id, error)
        Call.objects.filter(pk=call_id).update(
            recording_started_at=None, recording_failed=True, updated_at=timezone.now()
        )
        return RecordingStart.FAILED
    # The completed recording's callback writes the same SID, with its URL and length.
    Call.objects.filter(pk=call_id, recording_sid="").update(recording_sid=sid[:64])
    logger.info("Call %s: recording %s started after the announcement", call_id, sid)
    return RecordingStart.STARTED


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
