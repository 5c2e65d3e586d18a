"""An erasure's recordings, deleted at the carrier after the database is erased: the
carrier may be unavailable then, so the request lists the calls still to do and is
tried again (privacy.tasks) until none is left."""

from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.utils import timezone

from calls import telephony
from calls.models import Call
from calls.recordings import RecordingUnavailable, delete_recording
from privacy.models import DataSubjectRequest

logger = logging.getLogger(__name__)


def delete_pending_recordings(*, request_id: int) -> int:
    """Delete at the carrier the recordings ``request_id`` (an erasure) still lists, and
    return how many are left. The request is done when none is; a carrier that refuses
    for good (TelephonyRejected, not a 404) fails it with the carrier's words, the calls
    still listed, so that staff can see it and try again.

    Raises RecordingUnavailable when the carrier did not answer: the calls it had not
    deleted stay listed (those it had are saved as done), for the next try."""
    unavailable: RecordingUnavailable | None = None
    with transaction.atomic():
        request = (
            DataSubjectRequest.objects.select_for_update()
            .filter(pk=request_id, status=DataSubjectRequest.Status.RECORDINGS_PENDING)
            .first()
        )
        if request is None:
            return 0  # done already, or never pending
        request.recording_attempts += 1
        left = [pk for pk in request.pending_recordings if Call.objects.filter(pk=pk).exists()]
        try:
            for call in Call.objects.filter(pk__in=left).order_by("pk"):
                delete_recording(call)
                left.remove(call.pk)
        except RecordingUnavailable as error:
            logger.warning("Erasure %s: the carrier is unavailable: %s", request.pk, error)
            unavailable = error
            # Backed off: a minute, doubling, at most an hour (privacy.tasks' tick).
            delay = min(60 * 2 ** (request.recording_attempts - 1), 3600)
            request.recordings_retry_at = timezone.now() + datetime.timedelta(seconds=delay)
        except telephony.TelephonyRejected as error:
            request.status = DataSubjectRequest.Status.FAILED
            request.error = str(error)[:500]
        if not left:
            request.status = DataSubjectRequest.Status.DONE
            request.finished_at = timezone.now()
        request.pending_recordings = left
        request.save(
            update_fields=[
                "pending_recordings",
                "recording_attempts",
                "status",
                "error",
                "finished_at",
                "recordings_retry_at",
            ]
        )
    if unavailable is not None:
        raise unavailable
    return len(left)
