"""Running an import: creating it, its task's run (claimed once), its upload and its report."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter import media
from campaigns.deliveries import emit_event
from campaigns.imports.base import ImportFileError, ImportResult, RowError, RowWarning
from campaigns.imports.decoding import _read_csv
from campaigns.imports.rows import _add_json_row, _FirstRowProbe, _FirstRowRead, _Importer
from campaigns.models import (
    Campaign,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    WebhookEvent,
)
from campaigns.tasks import import_contacts_task

logger = logging.getLogger(__name__)


# A running import that has not reported progress for this long died with its worker; a
# new run may claim it (batches report every few seconds at most).
STALE_AFTER = datetime.timedelta(minutes=10)


_FIELD_MAX_LENGTH = ContactImportError._meta.get_field("field").max_length
_MESSAGE_MAX_LENGTH = ContactImportError._meta.get_field("message").max_length
_FAILURE_MAX_LENGTH = ContactImport._meta.get_field("failure_reason").max_length


def import_rows(*, campaign: Campaign, rows: Iterable[Mapping[str, Any]]) -> ImportResult:
    """Import JSON objects into ``campaign``, all or nothing but for the rejected rows.

    Keys: ``phone`` (required), ``time_zone``, ``external_id``, ``variables`` (an object);
    any other key is a variable too (``variables`` wins on a clash). Row n is rows[n - 1].
    """
    errors: list[RowError] = []
    warnings: list[RowWarning] = []

    def on_batch(batch: list[RowError], flagged: list[RowWarning], _progress: ImportResult) -> None:
        errors.extend(batch)
        warnings.extend(flagged)

    importer = _Importer(campaign=campaign, on_batch=on_batch)
    with transaction.atomic():
        for number, row in enumerate(rows, start=1):
            _add_json_row(importer, number, row)
        result = importer.close()
    result.errors, result.warnings = errors, warnings
    return result


def import_csv(
    *,
    campaign: Campaign,
    file: BinaryIO,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a CSV file (see the module docstring) into ``campaign``, streaming it.

    Rejected rows come back in ``errors``; a file that cannot be read as a whole raises
    ImportFileError and imports nothing. ``on_progress`` hears the rows read after each
    batch.
    """
    errors: list[RowError] = []
    warnings: list[RowWarning] = []

    def on_batch(batch: list[RowError], flagged: list[RowWarning], progress: ImportResult) -> None:
        errors.extend(batch)
        warnings.extend(flagged)
        if on_progress is not None:
            on_progress(progress.total_rows)

    importer = _Importer(campaign=campaign, on_batch=on_batch)
    with transaction.atomic():
        try:
            _read_csv(importer, file)
        finally:
            result = importer.close()
    result.errors, result.warnings = errors, warnings
    return result


def create_import(
    *,
    campaign: Campaign,
    file: UploadedFile,
    by: AbstractBaseUser | None,
    run_now: bool = False,
) -> ContactImport:
    """Store an uploaded CSV file and import it in the background once the transaction
    commits (``import_contacts_task``); with ``run_now``, in this thread right after the
    commit instead (a small file, which the staff console imports during the request)."""
    # created_by is AUTH_USER_MODEL, which ``by`` is; the stubs know it only as User.
    contact_import = ContactImport(  # type: ignore[misc]
        campaign=campaign, created_by=by, file_name=Path(file.name or "").name[:255]
    )
    # The stored name is ours: the upload's name is only shown.
    contact_import.file.save(f"{uuid.uuid4().hex}.csv", file, save=False)
    contact_import.full_clean()
    contact_import.save()
    if run_now:
        transaction.on_commit(partial(run_import, contact_import_id=contact_import.pk))
    else:
        # Celery 5.4's delay_on_commit, which celery-types does not know yet.
        import_contacts_task.delay_on_commit(contact_import.pk)  # type: ignore[attr-defined]
    return contact_import


def check_csv(file: BinaryIO) -> None:
    """Raise ImportFileError when ``file`` cannot be imported at all: not text, empty, no
    header naming a phone column, or no row under it. Reads up to the first row, then
    rewinds the file; the rows themselves are checked by the import."""
    start = file.tell()
    try:
        _read_csv(_FirstRowProbe(), file)  # type: ignore[arg-type]
    except _FirstRowRead:
        pass
    finally:
        file.seek(start)


def run_import(*, contact_import_id: int) -> ContactImport:
    """Import a stored upload, reporting progress, and tell the partner's webhooks.

    Safe to run twice: the import is claimed queued→running with a compare-and-set, and a
    run that finds it claimed does nothing (unless the claim went stale, STALE_AFTER, when
    its worker died: then it starts over, and rows already saved merge). Batches commit as
    they go; a file that breaks off halfway fails the import with the reason, keeping the
    rows before the break. The stored upload is deleted once the import has ended.
    """
    now = timezone.now()
    claimed = ContactImport.objects.filter(
        Q(state=ContactImport.State.QUEUED)
        | Q(state=ContactImport.State.RUNNING, updated_at__lt=now - STALE_AFTER),
        pk=contact_import_id,
    ).update(
        state=ContactImport.State.RUNNING,
        started_at=now,
        updated_at=now,
        finished_at=None,
        failure_reason="",
        total_rows=None,
        processed_rows=0,
        created_count=0,
        merged_count=0,
        error_count=0,
        flagged_count=0,
        missing_variables={},
    )
    contact_import = ContactImport.objects.select_related("campaign__partner").get(
        pk=contact_import_id
    )
    if not claimed:
        return contact_import
    # Of a run that died.
    contact_import.row_errors.all().delete()
    contact_import.row_warnings.all().delete()

    def on_batch(
        errors: list[RowError], warnings: list[RowWarning], progress: ImportResult
    ) -> None:
        for model, problems in ((ContactImportError, errors), (ContactImportWarning, warnings)):
            # Each model gets its own notes; mypy joins the two pairs' types.
            model.objects.bulk_create(
                model(  # type: ignore[misc]
                    contact_import=contact_import,
                    row=problem.row,
                    field=problem.field[:_FIELD_MAX_LENGTH],
                    value=problem.value,
                    message=problem.message[:_MESSAGE_MAX_LENGTH],
                )
                for problem in problems
            )
        ContactImport.objects.filter(pk=contact_import.pk).update(
            **_counts(progress), updated_at=timezone.now()
        )

    # Outside a transaction (as in the worker) batches are saved by a thread of their own
    # while the file is read on; inside one (tests), by this thread, in that transaction.
    importer = _Importer(
        campaign=contact_import.campaign,
        on_batch=on_batch,
        in_background=not connection.in_atomic_block,
    )
    state, reason = ContactImport.State.DONE, ""
    try:
        try:
            if not contact_import.file:
                raise FileNotFoundError(contact_import.file.name)
            with contact_import.file.open("rb") as file:
                _read_csv(importer, file)
        finally:
            result = importer.close()
    except ImportFileError as exc:
        state, reason = ContactImport.State.FAILED, str(exc.message)
    except OSError:
        state = ContactImport.State.FAILED
        reason = _("The uploaded file could not be read; upload it again.")
    now = timezone.now()
    ContactImport.objects.filter(pk=contact_import.pk).update(
        **_counts(result),
        total_rows=result.total_rows,
        state=state,
        failure_reason=reason[:_FAILURE_MAX_LENGTH],
        finished_at=now,
        updated_at=now,
    )
    _delete_upload(contact_import)
    contact_import.refresh_from_db()
    emit_event(
        partner=contact_import.campaign.partner,
        event_type=WebhookEvent.IMPORT_COMPLETED,
        payload=import_summary(contact_import),
        key=f"contact-import-{contact_import.pk}",  # one event however many runs
    )
    return contact_import


def _delete_upload(contact_import: ContactImport) -> None:
    """Forget the stored upload of an import that has ended (done or failed): its report
    (counts, and each rejected row with its value) is what is kept. Only an ended import
    lets go of it, so a run that dies halfway leaves it to the run that starts over."""
    name = contact_import.file.name
    if not name:
        return
    ContactImport.objects.filter(pk=contact_import.pk).update(file="")
    storage = contact_import.file.storage
    # Once the import's end is committed: a rolled-back end keeps the file it names.
    transaction.on_commit(partial(_delete_stored, storage, name))


def _delete_stored(storage: Any, name: str) -> None:
    try:
        storage.delete(name)
    except media.STORAGE_ERRORS:
        logger.warning("Could not delete the imported upload %s.", name, exc_info=True)


def import_summary(contact_import: ContactImport) -> dict[str, Any]:
    """What the import.completed event says about an import."""
    return {
        "id": contact_import.pk,
        "campaign": contact_import.campaign_id,
        "file_name": contact_import.file_name,
        "state": contact_import.state,
        "failure_reason": contact_import.failure_reason,
        "total_rows": contact_import.total_rows,
        "created": contact_import.created_count,
        "merged": contact_import.merged_count,
        "rejected": contact_import.error_count,
        "flagged": contact_import.flagged_count,
        "missing_variables": contact_import.missing_variables,
        "started_at": _isoformat(contact_import.started_at),
        "finished_at": _isoformat(contact_import.finished_at),
    }


def _isoformat(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _counts(result: ImportResult) -> dict[str, Any]:
    return {
        "processed_rows": result.total_rows,
        "created_count": result.created,
        "merged_count": result.merged,
        "error_count": result.rejected,
        "flagged_count": result.flagged,
        "missing_variables": result.missing_variables,
    }
