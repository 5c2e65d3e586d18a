"""Background work of data-subject requests: exports built, recordings deleted."""

from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from callcenter import media
from calls.recordings import RecordingUnavailable
from privacy import erasure, export, recordings
from privacy.models import DataSubjectRequest


@shared_task(acks_late=True)
def delete_recordings_task(request_id: int) -> int:
    """Delete an erasure's recordings at the carrier; while it is unavailable the request
    says when to try again, and ``retry_erasure_recordings_task`` does, until none is left."""
    try:
        return recordings.delete_pending_recordings(request_id=request_id)
    except RecordingUnavailable:
        return -1  # recorded on the request, tried again at its recordings_retry_at


class FilesNotDeleted(Exception):
    """Some of an erasure's files are still in the media storage: the task runs again."""


@shared_task(
    acks_late=True,
    autoretry_for=(FilesNotDeleted, *media.STORAGE_ERRORS),
    retry_backoff=60,
    retry_backoff_max=3600,
    max_retries=48,
)
def delete_erased_files_task(names: list[str]) -> int:
    """Delete files of an erasure that the media storage failed to delete when it was
    done (a bucket that did not answer), trying again for about two days."""
    if failed := erasure.delete_files(names):
        raise FilesNotDeleted(", ".join(failed))
    return len(names)


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
