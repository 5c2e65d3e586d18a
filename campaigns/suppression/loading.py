"""Importing a list's copy: the entries are loaded beside the live copy, in batches that
commit (so progress shows), then the list is pointed at the new copy in one transaction and
the old copy's entries deleted: a lookup sees the old list or the new one, never half.

PostgreSQL loads each batch with COPY into a temporary table and moves it into the entries
with ``INSERT ... SELECT DISTINCT ... ON CONFLICT DO NOTHING`` (a number listed twice is
counted, not an error); SQLite inserts batches with ``executemany``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from audit.models import Action, ActorType
from campaigns.models import (
    SuppressionCopy,
    SuppressionDigest,
    SuppressionFormat,
    SuppressionList,
    SuppressionNumber,
)
from campaigns.suppression.parsing import ReadReport, open_lines, parse_lines

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

BATCH = 250_000
# A running import that has reported no progress for this long died with its worker.
STALE_AFTER = datetime.timedelta(minutes=10)

Progress = Callable[[SuppressionCopy], None]


class SuppressionImportError(Exception):
    """The file could not be imported as a whole (unreadable, nothing good in it)."""


def create_copy_import(
    *,
    suppression_list: SuppressionList,
    refreshed_at: datetime.date,
    file: UploadedFile,
    by: AbstractBaseUser | None,
) -> SuppressionCopy:
    """Store an uploaded file and import it in the background once the transaction
    commits (``import_suppression_copy_task``)."""
    from campaigns.tasks import import_suppression_copy_task  # tasks import this module

    copy = SuppressionCopy(  # type: ignore[misc]  # created_by is AUTH_USER_MODEL
        suppression_list=suppression_list,
        refreshed_at=refreshed_at,
        created_by=by,
        file_name=Path(file.name or "").name[:255],
    )
    # The stored name is ours: the upload's name is only shown.
    copy.file.save(f"{uuid.uuid4().hex}", file, save=False)
    copy.full_clean()
    copy.save()
    import_suppression_copy_task.delay_on_commit(copy.pk)  # type: ignore[attr-defined]
    return copy


def run_copy_import(*, copy_id: int) -> SuppressionCopy:
    """Import an uploaded copy once: a pending copy (or a running one whose worker died) is
    claimed with a compare-and-set; another run of the same task finds nothing to do."""
    now = timezone.now()
    claimed = SuppressionCopy.objects.filter(
        pk=copy_id, state=SuppressionCopy.State.PENDING
    ).update(
        state=SuppressionCopy.State.RUNNING, progress_at=now
    ) or SuppressionCopy.objects.filter(
        pk=copy_id,
        state=SuppressionCopy.State.RUNNING,
        progress_at__lt=now - STALE_AFTER,
    ).update(progress_at=now)
    copy = SuppressionCopy.objects.select_related("suppression_list", "created_by").get(pk=copy_id)
    if not claimed:
        return copy
    _delete_entries(copy.pk)  # what a dead run left
    with copy.file.open("rb") as file:
        return load_copy(copy=copy, sources=[(copy.file_name, file)])


def import_files(
    *,
    suppression_list: SuppressionList,
    refreshed_at: datetime.date,
    paths: Sequence[Path],
    by: AbstractBaseUser | None = None,
    on_progress: Progress | None = None,
) -> SuppressionCopy:
    """Import files read in place (the management command) as one copy of the list, in
    this process; the copy's counts and bad lines say what was found."""
    copy = SuppressionCopy.objects.create(  # type: ignore[misc]  # created_by: AUTH_USER_MODEL
        suppression_list=suppression_list,
        refreshed_at=refreshed_at,
        created_by=by,
        file_name=", ".join(path.name for path in paths)[:255],
        state=SuppressionCopy.State.RUNNING,
        progress_at=timezone.now(),
    )
    with contextlib.ExitStack() as stack:
        sources = [(path.name, stack.enter_context(path.open("rb"))) for path in paths]
        return load_copy(copy=copy, sources=sources, on_progress=on_progress)


def load_copy(
    *,
    copy: SuppressionCopy,
    sources: Sequence[tuple[str, IO[bytes]]],
    on_progress: Progress | None = None,
) -> SuppressionCopy:
    """Load ``sources`` (file name, binary file) as ``copy``'s entries and make it the
    list's live copy. Bad lines are counted and kept as samples; a file with no good line,
    or one that cannot be read, fails the copy and leaves the live one as it was."""
    suppression_list = copy.suppression_list
    hashed = suppression_list.file_format == SuppressionFormat.SHA256
    report = ReadReport()

    def values() -> Iterator[int | bytes]:
        for file_name, file in sources:
            yield from parse_lines(
                open_lines(file),
                hashed=hashed,
                country_code=suppression_list.country_code,
                report=report,
                file_name=file_name if len(sources) > 1 else "",
            )

    try:
        inserted = 0
        stream = values()
        while batch := list(islice(stream, BATCH)):
            inserted += _insert(copy.pk, batch, hashed=hashed)
            _save_progress(copy, report, inserted)
            if on_progress is not None:
                on_progress(copy)
        _save_progress(copy, report, inserted)
        if not inserted:
            raise SuppressionImportError(
                _("No line of the file holds a %(format)s entry.")
                % {"format": suppression_list.get_file_format_display()}
            )
    except (OSError, EOFError, SuppressionImportError) as error:
        # EOFError: a gzip file cut short; OSError: not gzip after all, or unreadable.
        _delete_entries(copy.pk)
        copy.state = SuppressionCopy.State.FAILED
        copy.failure_reason = str(error) or error.__class__.__name__
        copy.finished_at = timezone.now()
        copy.save(update_fields=["state", "failure_reason", "finished_at"])
        logger.warning("suppression copy %s failed: %s", copy.pk, copy.failure_reason)
        return copy
    old = _swap(copy)
    if old is not None:
        _delete_entries(old)
    return copy


def _save_progress(copy: SuppressionCopy, report: ReadReport, inserted: int) -> None:
    copy.lines_read, copy.good_lines, copy.bad_lines = report.lines, report.good, report.bad
    copy.entry_count = inserted
    copy.duplicate_lines = report.good - inserted
    copy.bad_samples = [list(sample) for sample in report.bad_samples]
    copy.progress_at = timezone.now()
    copy.save(
        update_fields=[
            "lines_read",
            "good_lines",
            "bad_lines",
            "entry_count",
            "duplicate_lines",
            "bad_samples",
            "progress_at",
        ]
    )


def _swap(copy: SuppressionCopy) -> int | None:
    """Make ``copy`` the list's live copy and record it; returns the replaced copy's id."""
    with transaction.atomic():
        suppression_list = SuppressionList.objects.select_for_update().get(
            pk=copy.suppression_list_id
        )
        old = suppression_list.current_copy_id
        now = timezone.now()
        suppression_list.current_copy = copy
        suppression_list.refreshed_at = copy.refreshed_at
        suppression_list.entry_count = copy.entry_count
        suppression_list.imported_at = now
        suppression_list.imported_by = copy.created_by
        suppression_list.save(
            update_fields=[
                "current_copy",
                "refreshed_at",
                "entry_count",
                "imported_at",
                "imported_by",
                "updated_at",
            ]
        )
        copy.state, copy.finished_at = SuppressionCopy.State.DONE, now
        copy.save(update_fields=["state", "finished_at"])
        if old is not None:
            SuppressionCopy.objects.filter(pk=old).update(state=SuppressionCopy.State.REPLACED)
        user = copy.created_by
        actor = (
            audit.Actor(ActorType.STAFF, f"user:{user.pk}", user.get_username())
            if user is not None
            else audit.SYSTEM
        )
        audit.record(
            Action.SUPPRESSION_IMPORTED,
            partner_id=None,
            object_type="campaigns.suppressionlist",
            object_id=suppression_list.pk,
            actor=actor,
            details={
                "list": suppression_list.name,
                "kind": suppression_list.kind,
                "copy": copy.pk,
                "replaced_copy": old,
                "refreshed_at": copy.refreshed_at.isoformat(),
                "lines": copy.lines_read,
                "entries": copy.entry_count,
                "bad_lines": copy.bad_lines,
                "repeated": copy.duplicate_lines,
            },
        )
    return old


def _table(hashed: bool) -> tuple[str, str]:
    model = SuppressionDigest if hashed else SuppressionNumber
    return model._meta.db_table, "digest" if hashed else "number"


def _insert(copy_id: int, batch: list[int | bytes], *, hashed: bool) -> int:
    """Add ``batch`` to the copy's entries; returns how many were new."""
    table, column = _table(hashed)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            # sqlite3 sums the rows each statement changed: an ignored repeat adds none.
            cursor.executemany(
                f"INSERT OR IGNORE INTO {table} (copy_id, {column}) VALUES (%s, %s)",  # noqa: S608
                [(copy_id, value) for value in batch],
            )
            return int(cursor.rowcount)
        kind = "bytea" if hashed else "bigint"
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS suppression_staging_{kind} (value {kind}) "
            "ON COMMIT DELETE ROWS"
        )
        # Emptied here too: inside an outer transaction (a test's) nothing commits between.
        cursor.execute(f"TRUNCATE suppression_staging_{kind}")
        with cursor.cursor.copy(f"COPY suppression_staging_{kind} (value) FROM STDIN") as copy:
            copy.write("".join(_copy_lines(batch)))
        cursor.execute(
            f"INSERT INTO {table} (copy_id, {column}) "  # noqa: S608 - names are ours
            f"SELECT DISTINCT %s, value FROM suppression_staging_{kind} ORDER BY 2 "
            "ON CONFLICT DO NOTHING",
            [copy_id],
        )
        return int(cursor.rowcount)


def _copy_lines(batch: Iterable[int | bytes]) -> Iterator[str]:
    # COPY's text format: a backslash escapes, so bytea's "\x…" input is written "\\x…".
    for value in batch:
        yield f"\\\\x{value.hex()}\n" if isinstance(value, bytes) else f"{value}\n"


def _delete_entries(copy_id: int) -> None:
    """Delete a copy's entries (no foreign key cascades them: see the models)."""
    for hashed in (False, True):
        table, _column = _table(hashed)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE copy_id = %s", [copy_id])  # noqa: S608
