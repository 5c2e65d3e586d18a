"""Background work of data-subject requests: exports built, recordings deleted."""

from __future__ import annotations

from celery import shared_task

from calls.recordings import RecordingUnavailable
from privacy import export, recordings
from privacy.models import DataSubjectRequest


@shared_task(
    autoretry_for=(RecordingUnavailable,),
    retry_backoff=60,
    retry_backoff_max=60 * 60,
    retry_jitter=True,
    max_retries=8,
    acks_late=True,
)
def delete_recordings_task(request_id: int) -> int:
    """Delete an erasure's recordings at the carrier; retried while it is unavailable
    (and, past the retries, by ``retry_erasure_recordings_task``)."""
    return recordings.delete_pending_recordings(request_id=request_id)


@shared_task
def retry_erasure_recordings_task() -> int:
    """Queue again every erasure whose recordings are still to delete (beat, hourly): the
    carrier was unavailable for longer than the task's own retries."""
    pending = DataSubjectRequest.objects.filter(
        status=DataSubjectRequest.Status.RECORDINGS_PENDING
    ).values_list("pk", flat=True)
    for request_id in pending:
        delete_recordings_task.delay(request_id)
    return len(pending)


@shared_task(acks_late=True, time_limit=30 * 60)
def build_export_task(request_id: int, phone: str) -> None:
    """Build a data-subject export's file (privacy.export.build_export); the number
    comes with the task, never stored."""
    export.build_export(request_id=request_id, phone=phone)
