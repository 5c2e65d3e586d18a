"""Background work of data-subject requests: exports built, recordings deleted."""

from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from calls.recordings import RecordingUnavailable
from privacy import export, recordings
from privacy.models import DataSubjectRequest


@shared_task(acks_late=True)
def delete_recordings_task(request_id: int) -> int:
    """Delete an erasure's recordings at the carrier; while it is unavailable the request
    says when to try again, and ``retry_erasure_recordings_task`` does, until none is left."""
    try:
        return recordings.delete_pending_recordings(request_id=request_id)
    except RecordingUnavailable:
        return -1  # recorded on the request, tried again at its recordings_retry_at


@shared_task
def retry_erasure_recordings_task() -> int:
    """Queue again the erasures whose recordings are still to delete and whose time to
    try again has come (beat, every minute)."""
    pending = list(
        DataSubjectRequest.objects.filter(
            Q(recordings_retry_at__isnull=True) | Q(recordings_retry_at__lte=timezone.now()),
            status=DataSubjectRequest.Status.RECORDINGS_PENDING,
        ).values_list("pk", flat=True)
    )
    for request_id in pending:
        delete_recordings_task.delay(request_id)
    return len(pending)


@shared_task(acks_late=True, time_limit=30 * 60)
def build_export_task(request_id: int, phone: str) -> None:
    """Build a data-subject export's file (privacy.export.build_export); the number
    comes with the task, never stored."""
    export.build_export(request_id=request_id, phone=phone)
