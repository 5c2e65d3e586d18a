"""Contact imports: a CSV file or JSON rows into a campaign. Every row is checked; good rows
are saved in batches, bad ones come back as RowErrors naming the row, field and value.

A row is the same person as an existing contact, or as an earlier row of the same file,
when it has the same external id, or else the same phone (what ``add_contact`` does): its
variables are merged into that contact and it counts as merged, so uploading a file again
creates nothing twice. A row whose external id is another phone's is rejected, since
merging it would drop its phone.

A row whose contact, once saved, lacks a variable the campaign's template needs (absent or
blank, as a line reads it) is kept and flagged: a RowWarning per missing variable, counted in
``flagged`` and ``missing_variables``. Eligibility refuses to call such a contact until it
has a value, against the template as it is then: the report says what the rows lacked when
they were saved.

CSV files:

- Encoding: UTF-8 with or without a byte order mark, or UTF-16 with one. A file that is not
  valid UTF-8 is read as Windows-1252, which Excel writes in Spain.
- Delimiter: whichever of ``,`` ``;`` tab ``|`` the header row uses most (``,`` on a tie);
  a first line ``sep=;``, which Excel understands, names it.
- The first row names the columns. The phone, time zone and external id columns may go by
  the names in COLUMN_ALIASES, compared ignoring case, accents, spaces and hyphens
  ("Teléfono", "phone number", "TEL"). Every other column is a variable named by its
  header as written (stripped); empty cells are left out, and so are columns with no name.
- Rows are numbered as a spreadsheet shows them: the header is row 1, so the first contact
  is row 2; a quoted value over several lines is one row. JSON rows count from 1.
- Limits: MAX_COLUMNS columns, MAX_LINE_CHARS characters on a line and the csv module's
  field size limit (128 KiB) in a value: a row with a longer value is rejected, the rows
  after it are read. So is a row whose quote is never closed (the rest of the file would be
  one value): the lines after it are read as rows. A NUL character rejects the row it is in.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import itertools
import json
import logging
import re
import sys
import unicodedata
import uuid
import zoneinfo
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.deliveries import emit_event
from campaigns.eligibility import needed_variables
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    WebhookEvent,
)
from campaigns.phones import PhoneReader
from campaigns.tasks import import_contacts_task

logger = logging.getLogger(__name__)

BATCH_SIZE = 10_000
MAX_COLUMNS = 1_000
MAX_LINE_CHARS = 1_048_576
# A running import that has not reported progress for this long died with its worker; a
# new run may claim it (batches report every few seconds at most).
STALE_AFTER = datetime.timedelta(minutes=10)

COLUMN_ALIASES: dict[str, frozenset[str]] = {
    "phone": frozenset(
        {
            "phone",
            "phone_number",
            "phonenumber",
            "telephone",
            "telephone_number",
            "tel",
            "mobile",
            "mobile_phone",
            "cell",
            "cellphone",
            "telefono",
            "numero_de_telefono",
            "numero_telefono",
            "telefono_movil",
            "movil",
            "celular",
        }
    ),
    "time_zone": frozenset({"time_zone", "timezone", "tz", "zona_horaria", "huso_horario"}),
    "external_id": frozenset(
        {
            "external_id",
            "externalid",
            "external_reference",
            "id",
            "customer_id",
            "client_id",
            "id_externo",
            "id_cliente",
            "referencia",
            "reference",
        }
    ),
}
DELIMITERS = (",", ";", "\t", "|")

_CHUNK_BYTES = 1_048_576
_EXTERNAL_ID_MAX_LENGTH = Contact._meta.get_field("external_id").max_length
_VALUE_MAX_LENGTH = 1_000  # of a rejected value, as reported
_SAVE_ATTEMPTS = 3
_DEADLOCK = "40P01"
_FIELD_MAX_LENGTH = ContactImportError._meta.get_field("field").max_length
_MESSAGE_MAX_LENGTH = ContactImportError._meta.get_field("message").max_length
_FAILURE_MAX_LENGTH = ContactImport._meta.get_field("failure_reason").max_length


class ImportFileError(ValidationError):
    """The file as a whole cannot be imported; ``message`` says why, translated."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_file")


@dataclass(frozen=True)
class RowError:
    """Why one row was rejected: its number (see the module docstring), the field (a
    column's header for a CSV variable; empty for the row as a whole) and the value."""

    row: int
    field: str
    value: str
    message: str


@dataclass(frozen=True)
class RowWarning(RowError):
    """A kept row whose contact cannot be called as it is: ``field`` is the variable the
    call template needs that it lacks, ``value`` the blank it has, if any."""


@dataclass
class ImportResult:
    """What an import did. ``merged`` counts rows that matched an existing contact or an
    earlier row; ``rejected`` the rows with errors (a row may have several); ``flagged``
    the rows kept with warnings, and ``missing_variables`` the rows kept without each
    variable the template needs."""

    total_rows: int = 0
    created: int = 0
    merged: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    flagged: int = 0
    missing_variables: dict[str, int] = field(default_factory=dict)
    warnings: list[RowWarning] = field(default_factory=list)


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
    contact_import = ContactImport(
        campaign=campaign, created_by=by, file_name=Path(file.name or "").name[:255]
    )
    # The stored name is ours: the upload's name is only shown.
    contact_import.file.save(f"{uuid.uuid4().hex}.csv", file, save=False)
    contact_import.full_clean()
    contact_import.save()
    if run_now:
        transaction.on_commit(partial(run_import, contact_import_id=contact_import.pk))
    else:
        import_contacts_task.delay_on_commit(contact_import.pk)
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
            model.objects.bulk_create(
                model(
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
        state, reason = ContactImport.State.FAILED, exc.message
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
    except OSError:
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


# --- Rows ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    row: int
    phone: str
    time_zone: str
    external_id: str
    variables: dict[str, Any]
    # False when the campaign had no contacts and no earlier row had this phone or
    # external id: then only someone saving meanwhile can have one, and the insert says so.
    may_exist: bool = True


class _Importer:
    """Checks rows one by one and saves the good ones a batch at a time (in a thread of
    its own ``in_background``); after each batch ``on_batch`` hears that batch's errors and
    warnings and the counts so far. ``close`` saves the last batch and returns the counts."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        on_batch: Callable[[list[RowError], list[RowWarning], ImportResult], None],
        in_background: bool = False,
    ) -> None:
        self._phones = PhoneReader(region=campaign.phone_region)
        self._time_zones = _time_zones()
        self._writer = _Writer(campaign=campaign, on_batch=on_batch)
        # Into an empty campaign, a row can only match an earlier row: keep track of them
        # and spare the database the look-up of every other row.
        self._seen = None if campaign.contacts.exists() else _SeenKeys()
        self._background = None
        self._switch_interval = sys.getswitchinterval()
        if in_background:
            self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import")
            self._background.submit(_commit_asynchronously)
            # The writer needs the interpreter back after each database reply: by default
            # it waits up to 5 ms for the reading thread to let go, and the database sat
            # idle (docs/decisions/0006-contact-import-write-path.md).
            sys.setswitchinterval(0.001)
        self._pending: deque[Future[None]] = deque()
        self._rows: list[_Row] = []
        self._errors: list[RowError] = []
        self._read = self._rejected = 0  # rows read and rejected so far
        self._batch_read = 0

    def add(
        self,
        number: int,
        *,
        phone: str,
        time_zone: str = "",
        external_id: str = "",
        variables: dict[str, Any],
        problems: list[RowError] | None = None,
    ) -> None:
        """Check row ``number`` (a row's fields stripped, but for the phone) and keep it
        for the batch, or reject it with its ``problems`` and those found here."""
        errors = problems or []
        zones: tuple[str, ...] = ()
        if not phone.strip():
            if not any(error.field == "phone" for error in errors):
                errors.append(RowError(number, "phone", "", _("The phone number is missing.")))
        else:
            try:
                phone, zones = self._phones.read(phone)
            except ValidationError as exc:
                errors.append(RowError(number, "phone", _clip(phone.strip()), exc.messages[0]))
        if time_zone and time_zone not in self._time_zones:
            errors.append(RowError(number, "time_zone", _clip(time_zone), _zone_error(time_zone)))
        if len(external_id) > _EXTERNAL_ID_MAX_LENGTH:
            errors.append(
                RowError(
                    number,
                    "external_id",
                    _clip(external_id),
                    _("The external id is longer than %(max)d characters.")
                    % {"max": _EXTERNAL_ID_MAX_LENGTH},
                )
            )
        elif "\x00" in external_id:
            errors.append(RowError(number, "external_id", _clip(external_id), _nul_error()))
        if errors:
            self.reject(errors)
            return
        if not time_zone:
            # As add_contact: one zone for the number is stored; several are all checked.
            time_zone = zones[0] if len(zones) == 1 else ""
        row = _Row(number, phone, time_zone, external_id, variables)
        if self._seen is not None:
            # Both keys are added, whatever the first answers.
            seen_phone = self._seen.check_and_add(phone)
            row.may_exist = seen_phone | (
                bool(external_id) and self._seen.check_and_add(external_id)
            )
        self._rows.append(row)
        self._count()

    def reject(self, errors: list[RowError]) -> None:
        """Reject one row for ``errors`` (all of the same row)."""
        self._errors.extend(errors)
        self._rejected += 1
        self._count()

    @property
    def rows_read(self) -> int:
        return self._read

    def _count(self) -> None:
        self._read += 1
        self._batch_read += 1
        if self._batch_read >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        """Hand the rows read since the last batch to the writer."""
        if not self._batch_read:
            return
        batch = _Batch(self._rows, self._errors, read=self._read, rejected=self._rejected)
        self._rows, self._errors, self._batch_read = [], [], 0
        if self._background is None:
            self._writer.write(batch)
            return
        # Two batches at most wait for the writer (a third one is being read).
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(self._background.submit(self._writer.write, batch))

    def close(self) -> ImportResult:
        """Save what is left, wait for the writer and return the counts. A failure of the
        writer is raised here."""
        self.flush()
        if self._background is not None:
            try:
                while self._pending:
                    self._pending.popleft().result()
            finally:
                # The writer's database connection belongs to its thread: close it there.
                self._background.submit(_close_connection)
                self._background.shutdown(wait=True)
                sys.setswitchinterval(self._switch_interval)
        return ImportResult(
            total_rows=self._read,
            created=self._writer.created,
            merged=self._writer.merged,
            rejected=self._rejected + self._writer.lost,
            flagged=self._writer.flagged,
            missing_variables=dict(sorted(self._writer.missing.items())),
        )


class _FirstRowRead(Exception):
    pass


class _FirstRowProbe:
    """Stands in for an _Importer to read a file up to its first row (``check_csv``)."""

    rows_read = 0

    def add(self, number: int, **row: Any) -> None:
        raise _FirstRowRead

    def flush(self) -> None:
        pass


def _commit_asynchronously() -> None:
    """Let this thread's connection commit without waiting for the disk (PostgreSQL):
    a crash may lose the last batches, which a new run of the import saves again."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")


def _close_connection() -> None:
    connection.close()


@dataclass(slots=True)
class _Batch:
    rows: list[_Row]
    errors: list[RowError]
    read: int  # rows read up to the end of the batch
    rejected: int  # rows rejected up to the end of the batch (before saving)


class _Writer:
    """Saves batches in order and reports each; counts what saving did."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        on_batch: Callable[[list[RowError], list[RowWarning], ImportResult], None],
    ) -> None:
        self._store = _store(campaign)
        self._on_batch = on_batch
        # The template as it is when the import starts.
        self._needed = tuple(needed_variables(campaign=campaign))
        self.created = self.merged = self.lost = self.flagged = 0
        self.missing: Counter[str] = Counter()
        self._failed = False

    def write(self, batch: _Batch) -> None:
        """Save ``batch`` as ``add_contact`` would save its rows one after the other, and
        report it, in one transaction; one the database cancelled to break a deadlock
        with another import is tried again. After a failure, batches are not saved: the
        rows that follow the ones lost would leave a gap."""
        if self._failed:
            return
        self._failed = True  # until this batch is saved
        attempt = 1
        while True:
            try:
                with transaction.atomic():
                    created, merged, lost, warnings = (
                        _save_once(self._store, batch.rows, self._needed)
                        if batch.rows
                        else (0, 0, [], [])
                    )
                    missing = self.missing + Counter(warning.field for warning in warnings)
                    progress = ImportResult(
                        total_rows=batch.read,
                        created=self.created + created,
                        merged=self.merged + merged,
                        rejected=batch.rejected + self.lost + len(lost),
                        flagged=self.flagged + len({warning.row for warning in warnings}),
                        missing_variables=dict(sorted(missing.items())),
                    )
                    errors = sorted([*batch.errors, *lost], key=lambda error: error.row)
                    warnings.sort(key=lambda warning: warning.row)
                    self._on_batch(errors, warnings, progress)
                break
            except OperationalError as exc:
                if attempt == _SAVE_ATTEMPTS or getattr(exc.__cause__, "sqlstate", "") != _DEADLOCK:
                    raise
                attempt += 1
        self.created, self.merged = progress.created, progress.merged
        self.flagged, self.missing = progress.flagged, missing
        self.lost += len(lost)
        self._store.saved(created=created)
        self._failed = False


class _SeenKeys:
    """The phones and external ids an import has read: a set while they are few, then a
    Bloom filter of 32 MiB whatever their number. "Not seen" is always right; "seen" is
    wrong for about 1 key in 4,000 of a million-row file (two million keys), which costs
    that row a look-up."""

    _SET_SIZE = 100_000
    _MASK = (1 << 28) - 1  # the filter's bits

    def __init__(self) -> None:
        self._keys: set[str] | None = set()
        self._bits = bytearray()

    def check_and_add(self, key: str) -> bool:
        """Whether ``key`` may have been added before; add it."""
        if self._keys is not None:
            if key in self._keys:
                return True
            self._keys.add(key)
            if len(self._keys) > self._SET_SIZE:
                self._bits = bytearray((self._MASK + 1) // 8)
                for known in self._keys:
                    self._set(known)
                self._keys = None
            return False
        return self._set(key)

    def _set(self, key: str) -> bool:
        digest = hash(key)  # 64 well-mixed bits (SipHash), two 28-bit indexes from them
        first, second = digest & self._MASK, (digest >> 28) & self._MASK
        bits = self._bits
        seen = bits[first >> 3] >> (first & 7) & bits[second >> 3] >> (second & 7) & 1
        bits[first >> 3] |= 1 << (first & 7)
        bits[second >> 3] |= 1 << (second & 7)
        return bool(seen)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone_error(value: str) -> str:
    # validate_time_zone's message, without its look-up of every zone on disk each time.
    return _("“%(value)s” is not an IANA time zone such as Europe/Madrid.") % {"value": value}


def _nul_error() -> str:
    return _("The value contains a NUL character, which cannot be stored.")


def _field_label(name: str) -> str:
    return str(Contact._meta.get_field(name).verbose_name)


def _clip(value: str) -> str:
    return value if len(value) <= _VALUE_MAX_LENGTH else value[: _VALUE_MAX_LENGTH - 1] + "…"


def _add_json_row(importer: _Importer, number: int, row: Any) -> None:
    if not isinstance(row, Mapping):
        importer.reject(
            [RowError(number, "", _clip(_json_text(row)), _("Each row must be a JSON object."))]
        )
        return
    problems = []
    texts = {}
    for name in ("phone", "time_zone", "external_id"):
        value = row.get(name)
        if value is None:
            texts[name] = ""
        elif isinstance(value, str):
            texts[name] = value if name == "phone" else value.strip()
        elif isinstance(value, int) and not isinstance(value, bool) and name != "time_zone":
            texts[name] = str(value)  # a number written without quotes
        else:
            texts[name] = ""
            problems.append(
                RowError(
                    number,
                    name,
                    _clip(_json_text(value)),
                    _("The %(field)s must be text.") % {"field": _field_label(name)},
                )
            )
    variables = {key: value for key, value in row.items() if key not in _JSON_FIELDS}
    given = row.get("variables")
    if isinstance(given, Mapping):
        variables.update(given)
    elif given is not None:
        problems.append(
            RowError(
                number,
                "variables",
                _clip(_json_text(given)),
                _("The variables must be a JSON object."),
            )
        )
    problem = _json_problem(variables)
    if problem:
        problems.append(RowError(number, "variables", _clip(_json_text(variables)), problem))
    importer.add(number, variables=variables, problems=problems, **texts)


_JSON_FIELDS = frozenset({"phone", "time_zone", "external_id", "variables"})


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        return repr(value)


def _json_problem(variables: dict[str, Any]) -> str:
    """Why ``variables`` cannot be stored as JSON in the database; empty when it can."""
    try:
        text = json.dumps(variables, ensure_ascii=False, allow_nan=False)
        text.encode()  # a lone surrogate fails here
    except (TypeError, ValueError, UnicodeEncodeError):
        return _("The variables cannot be stored as JSON.")
    if _has_nul(variables):
        return _nul_error()
    return ""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


# --- CSV ----------------------------------------------------------------------------------


class _LineTooLong(Exception):
    pass


class _Text:
    """The file's text, a chunk at a time, in the encoding it was written in (see the
    module docstring). ``has_nul``: a NUL character has been read."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.has_nul = False

    def __iter__(self) -> Iterator[str]:
        head = self.file.read(_CHUNK_BYTES)
        if not head.strip():
            raise ImportFileError(_("The file is empty."))
        if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
            raise ImportFileError(
                _("This is a spreadsheet workbook, not a CSV file: save it as “CSV UTF-8”.")
            )
        fallback = False  # to Windows-1252, while all read so far is ASCII
        if head.startswith(codecs.BOM_UTF8):
            head = head[len(codecs.BOM_UTF8) :]
            decoder = codecs.getincrementaldecoder("utf-8")()
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            decoder = codecs.getincrementaldecoder("utf-16")()
        elif head.count(b"\x00") * 4 > len(head):
            # Text in UTF-16 is NUL every other byte; a stray NUL in a cell is that row's
            # error (_add_csv_row).
            raise ImportFileError(
                _(
                    "The file is not text, or it is UTF-16 without a byte order mark: save "
                    "it as “CSV UTF-8”."
                )
            )
        else:
            decoder = codecs.getincrementaldecoder("utf-8")()
            fallback = True
        offset, chunk = 0, head
        while True:
            pending = decoder.getstate()[0] if fallback else b""
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                if not (fallback and exc.object[: exc.start].isascii()):
                    raise ImportFileError(_undecodable(offset - len(pending) + exc.start)) from exc
                # Not UTF-8, and ASCII up to here, where both encodings agree.
                fallback = False
                decoder = codecs.getincrementaldecoder("cp1252")()
                try:
                    text = decoder.decode(pending + chunk, final=final)
                except UnicodeDecodeError as cp1252_exc:
                    raise ImportFileError(
                        _undecodable(offset - len(pending) + cp1252_exc.start)
                    ) from cp1252_exc
            if fallback and not text.isascii():
                fallback = False  # UTF-8 it is
            if "\x00" in text:
                self.has_nul = True
            if text:
                yield text
            if final:
                return
            offset += len(chunk)
            chunk = self.file.read(_CHUNK_BYTES)


def _undecodable(offset: int) -> str:
    return _(
        "The file cannot be read as text (byte %(offset)d is neither UTF-8 nor "
        "Windows-1252): save it as “CSV UTF-8”."
    ) % {"offset": offset}


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of ``chunks`` with their endings (``\\n``, ``\\r\\n`` or ``\\r``), as
    the csv module reads them."""
    carry = ""
    for text in chunks:
        lines = io.StringIO(carry + text, newline="").readlines()
        if max(map(len, lines)) > MAX_LINE_CHARS:
            # The rows before it are good: read them first.
            yield from itertools.takewhile(lambda line: len(line) <= MAX_LINE_CHARS, lines)
            raise _LineTooLong
        carry = lines.pop() if not lines[-1].endswith("\n") else ""
        yield from lines
    if carry:
        yield carry


_QUOTED = re.compile(r'"[^"]*"')
_SEP_LINE = re.compile(r"^sep=(.)\r?\n?$")


def _delimiter(header_line: str) -> str:
    """The delimiter the header row uses most, outside quotes; ``,`` on a tie or none."""
    line = _QUOTED.sub("", header_line)
    return max(DELIMITERS, key=line.count)


@dataclass(frozen=True)
class _Columns:
    width: int
    phone: int
    time_zone: int | None
    external_id: int | None
    variables: list[tuple[int, str]]

    @classmethod
    def from_header(cls, header: list[str]) -> _Columns:
        if len(header) > MAX_COLUMNS:
            raise ImportFileError(
                _("The file has %(count)d columns; at most %(max)d are allowed.")
                % {"count": len(header), "max": MAX_COLUMNS}
            )
        fields: dict[str, tuple[int, str]] = {}
        variables: dict[str, int] = {}
        for index, cell in enumerate(header):
            name = cell.strip()
            if not name:
                continue
            if "\x00" in name:
                raise ImportFileError(
                    _("The column “%(name)s” has a NUL character in its name.")
                    % {"name": name.replace("\x00", "\\0")}
                )
            key = _column_key(name)
            field_name = next(
                (candidate for candidate, aliases in COLUMN_ALIASES.items() if key in aliases),
                None,
            )
            if field_name is None:
                if name in variables:
                    raise ImportFileError(
                        _("The column “%(name)s” appears twice.") % {"name": name}
                    )
                variables[name] = index
            elif field_name in fields:
                raise ImportFileError(
                    _("Two columns hold the %(field)s: “%(first)s” and “%(second)s”; keep one.")
                    % {
                        "field": _field_label(field_name),
                        "first": fields[field_name][1],
                        "second": name,
                    }
                )
            else:
                fields[field_name] = (index, name)
        if "phone" not in fields:
            raise ImportFileError(
                _(
                    "The first row must name the columns, one of them the phone (phone, "
                    "telefono, movil…). It names: %(columns)s."
                )
                % {"columns": _clip(", ".join(cell.strip() for cell in header))}
            )
        return cls(
            width=len(header),
            phone=fields["phone"][0],
            time_zone=fields["time_zone"][0] if "time_zone" in fields else None,
            external_id=fields["external_id"][0] if "external_id" in fields else None,
            variables=[(index, name) for name, index in variables.items()],
        )


def _column_key(name: str) -> str:
    """``name`` compared as COLUMN_ALIASES are written: "Nº Teléfono" → "no_telefono"."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(char for char in text if not unicodedata.combining(char))
    return re.sub(r"[\s\-./]+", "_", text).strip("_")


def _read_csv(importer: _Importer, file: BinaryIO) -> None:
    text = _Text(file)
    lines = _lines(text)
    number = 0  # of the row read last
    try:
        # Rows before the header are blank: count them, as a spreadsheet would.
        leading = []
        for line in lines:
            leading.append(line)
            if line.strip():
                break
        if not leading or not leading[-1].strip():
            raise ImportFileError(_("The file is empty."))
        if match := _SEP_LINE.match(leading[-1]):
            delimiter = match[1]
            leading.pop()  # Excel hides this line; so do we
        else:
            delimiter = _delimiter(leading[-1])
        source = _RowLines(_chain(leading, lines))
        reader = csv.reader(source, delimiter=delimiter)
        columns = None
        while True:
            source.start_row()
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # A value over the csv module's limit: the reader goes on at the next line.
                number += 1
                if columns is None or "field limit" not in str(exc):
                    raise
                source.skip_quoted_rest()  # of a value over several lines
                importer.reject([_oversized_value(number, source.row_text())])
                continue
            number += 1
            if source.unterminated_quote():
                # The quote opened in this row swallowed the rest of the file as one value:
                # reject the row, and read the lines it swallowed as the rows they are.
                importer.reject([_unterminated_quote(number, source.row_lines[0])])
                source = _RowLines(iter(source.row_lines[1:]))
                reader = csv.reader(source, delimiter=delimiter)
                continue
            if columns is None:
                if any(cell.strip() for cell in cells):
                    columns = _Columns.from_header(cells)
                continue
            if not any(cells):
                continue  # a blank row
            _add_csv_row(importer, number, cells, columns, delimiter, has_nul=text.has_nul)
    except _LineTooLong as exc:
        importer.flush()
        raise ImportFileError(
            _("Row %(row)d is longer than %(max)d characters.")
            % {"row": number + 1, "max": MAX_LINE_CHARS}
        ) from exc
    except csv.Error as exc:
        importer.flush()
        if "field limit" in str(exc):
            message = _("Row %(row)d has a value longer than %(max)d characters.") % {
                "row": number,
                "max": csv.field_size_limit(),
            }
        else:
            message = _("Row %(row)d cannot be read as CSV: %(error)s.") % {
                "row": number,
                "error": exc,
            }
        raise ImportFileError(message) from exc
    except ImportFileError:
        importer.flush()
        raise
    if columns is None:
        raise ImportFileError(_("The file is empty."))
    importer.flush()
    if importer.rows_read == 0:
        raise ImportFileError(_("The file names its columns but has no contacts in them."))


class _RowLines:
    """The lines handed to the csv reader, keeping those of the row being read
    (``row_lines``) and whether the file ended inside it."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.row_lines: list[str] = []
        self.ended = False

    def __iter__(self) -> _RowLines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.row_lines.append(line)
        return line

    def start_row(self) -> None:
        self.row_lines = []

    def row_text(self) -> str:
        return "".join(self.row_lines)

    def skip_quoted_rest(self) -> None:
        """Read on to the end of the row when it stopped inside a quoted value (its quotes
        are odd), so that the reader goes on at the next row, not inside the value."""
        quotes = self.row_text().count('"')
        while quotes % 2 == 1:
            try:
                quotes += next(self).count('"')
            except StopIteration:
                return

    def unterminated_quote(self) -> bool:
        """Whether the row just read ran to the end of the file inside a quoted value: a
        quote is never closed when the row's quotes are odd (a quote in a quoted value is
        written twice)."""
        return self.ended and len(self.row_lines) > 1 and self.row_text().count('"') % 2 == 1


def _oversized_value(number: int, text: str) -> RowError:
    return RowError(
        number,
        "",
        _clip(text.rstrip("\r\n")),
        _("The row has a value longer than %(max)d characters; it was not imported.")
        % {"max": csv.field_size_limit()},
    )


def _unterminated_quote(number: int, line: str) -> RowError:
    return RowError(
        number,
        "",
        _clip(line.rstrip("\r\n")),
        _(
            'A quote (") opened in this row is never closed: the row was not imported, and '
            "the lines after it were read as rows of their own."
        ),
    )


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _add_csv_row(
    importer: _Importer,
    number: int,
    cells: list[str],
    columns: _Columns,
    delimiter: str,
    *,
    has_nul: bool,
) -> None:
    problems = []
    if len(cells) < columns.width:
        cells += [""] * (columns.width - len(cells))
    elif len(cells) > columns.width and any(cell.strip() for cell in cells[columns.width :]):
        # Most likely a value with the delimiter in it, unquoted: the row is misaligned.
        problems.append(
            RowError(
                number,
                "",
                _clip(delimiter.join(cells[columns.width :])),
                _("The row has %(cells)d cells but the header names %(columns)d columns.")
                % {"cells": len(cells), "columns": columns.width},
            )
        )
    variables = {
        name: value for index, name in columns.variables if (value := cells[index].strip())
    }
    if has_nul:
        problems.extend(
            RowError(number, name, _clip(value), _nul_error())
            for name, value in variables.items()
            if "\x00" in value
        )
    importer.add(
        number,
        phone=cells[columns.phone],
        time_zone="" if columns.time_zone is None else cells[columns.time_zone].strip(),
        external_id="" if columns.external_id is None else cells[columns.external_id].strip(),
        variables=variables,
        problems=problems,
    )


# --- Saving -------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)  # compared, and hashed, by identity
class _Existing:
    """A contact already in the campaign, and the variables rows of the batch give it."""

    pk: int
    variables: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    phone: str = ""

    def changed(self) -> dict[str, Any]:
        missing = object()
        return {
            key: value
            for key, value in self.changes.items()
            if self.variables.get(key, missing) != value
        }


def _store(campaign: Campaign) -> _PostgresStore | _DjangoStore:
    return _PostgresStore(campaign) if connection.vendor == "postgresql" else _DjangoStore(campaign)


def _save_once(
    store: _PostgresStore | _DjangoStore, rows: list[_Row], needed: tuple[str, ...]
) -> tuple[int, int, list[RowError], list[RowWarning]]:
    """Save ``rows``: created, merged, the rows refused (an external id of a contact with
    another phone; lost to concurrent writers), and a warning
    for each variable in ``needed`` that a contact saved lacks, on the first row of the
    batch that made or merged into it."""
    created = merged = 0
    warnings: list[RowWarning] = []
    refused: list[RowError] = []
    pending = rows
    for round_ in range(_SAVE_ATTEMPTS):
        # Rows the insert found saved meanwhile (later rounds) are all looked up.
        lookup = [row for row in pending if row.may_exist or round_]
        by_external_id, by_phone = store.existing(lookup) if lookup else ({}, {})
        new: dict[str, _Row] = {}  # by phone
        new_by_external_id: dict[str, _Row] = {}
        touched: dict[_Existing, int] = {}  # by the first row merged into it
        for row in pending:
            target = None
            if row.external_id:
                target = by_external_id.get(row.external_id) or new_by_external_id.get(
                    row.external_id
                )
                if target is not None and target.phone != row.phone:
                    # Merging would drop this row's phone without a word.
                    refused.append(_external_id_taken(row, target.phone))
                    continue
            if target is None:
                target = by_phone.get(row.phone) or new.get(row.phone)
            if target is None:
                new[row.phone] = _Row(
                    row.row, row.phone, row.time_zone, row.external_id, dict(row.variables)
                )
                if row.external_id:
                    new_by_external_id[row.external_id] = new[row.phone]
                continue
            merged += 1
            if isinstance(target, _Existing):
                target.changes.update(row.variables)
                touched.setdefault(target, row.row)
            else:
                target.variables.update(row.variables)
        store.merge({*by_phone.values(), *by_external_id.values()})
        inserted = store.insert(list(new.values()))
        created += len(inserted)
        if needed:
            for contact, number in touched.items():
                warnings += _missing(needed, number, {**contact.variables, **contact.changes})
            for phone, row in new.items():
                if phone in inserted:
                    warnings += _missing(needed, row.row, row.variables)
        # Rows another import (or add_contact) saved in the meantime: merge them instead.
        pending = [row for phone, row in new.items() if phone not in inserted]
        if not pending:
            return created, merged, refused, warnings
    lost = refused + [
        RowError(
            row.row,
            "",
            row.phone,
            _("Someone else was saving this contact at the same moment; import the row again."),
        )
        for row in pending
    ]
    return created, merged, lost, warnings


def _external_id_taken(row: _Row, phone: str) -> RowError:
    return RowError(
        row.row,
        "phone",
        row.phone,
        _(
            "The external id %(external_id)s belongs to the contact with phone %(phone)s, "
            "not to this one: the row was not imported. Correct the phone or the external id."
        )
        % {"external_id": row.external_id, "phone": phone},
    )


def _missing(needed: tuple[str, ...], number: int, variables: dict[str, Any]) -> list[RowWarning]:
    """A warning for each of ``needed`` that ``variables`` lack: absent, null or blank (a
    value of another type is said as its text, never blank)."""
    warnings = []
    for name in needed:
        value = variables.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            message = _(
                "Missing variable %(name)s, which the call template needs: the contact is "
                "kept, but it will not be called until it has a value."
            ) % {"name": name}
            warnings.append(RowWarning(number, name, _clip(value or ""), message))
    return warnings


def _index(
    found: Iterable[tuple[int, str, str, Any]],
) -> tuple[dict[str, _Existing], dict[str, _Existing]]:
    by_external_id: dict[str, _Existing] = {}
    by_phone: dict[str, _Existing] = {}
    contacts: dict[int, _Existing] = {}
    for pk, phone, external_id, variables in found:
        contact = contacts.get(pk)
        if contact is None:
            if isinstance(variables, str):
                variables = json.loads(variables)
            contact = contacts[pk] = _Existing(pk, variables, phone=phone)
        by_phone[phone] = contact
        if external_id:
            by_external_id[external_id] = contact
    return by_external_id, by_phone


class _DjangoStore:
    """Contacts through the ORM: SQLite, where a transaction holds the write lock from its
    start (IMMEDIATE), so nobody can add a contact between the look-up and the insert."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign

    def existing(self, rows: list[_Row]) -> tuple[dict[str, _Existing], dict[str, _Existing]]:
        found = []
        # In slices: SQLite takes a limited number of parameters (999 before 3.32).
        for start in range(0, len(rows), 400):
            part = rows[start : start + 400]
            external_ids = [row.external_id for row in part if row.external_id]
            found += (
                Contact.objects.filter(campaign=self.campaign)
                .filter(Q(phone__in=[row.phone for row in part]) | Q(external_id__in=external_ids))
                .order_by()
                .values_list("pk", "phone", "external_id", "variables")
            )
        return _index(found)

    def insert(self, rows: list[_Row]) -> set[str]:
        try:
            with transaction.atomic():
                Contact.objects.bulk_create(
                    Contact(
                        campaign=self.campaign,
                        phone=row.phone,
                        time_zone=row.time_zone,
                        external_id=row.external_id,
                        variables=row.variables,
                    )
                    for row in rows
                )
        except IntegrityError:
            return set()  # a writer the lock did not stop: look again, and merge
        return {row.phone for row in rows}

    def merge(self, contacts: Iterable[_Existing]) -> None:
        now = timezone.now()
        updates = []
        for contact in contacts:
            if changed := contact.changed():
                variables = {**contact.variables, **changed}
                updates.append(Contact(pk=contact.pk, variables=variables, updated_at=now))
        Contact.objects.bulk_update(updates, ["variables", "updated_at"], batch_size=500)

    def saved(self, *, created: int) -> None:
        pass


class _PostgresStore:
    """Contacts in PostgreSQL with a few set-based statements a batch: inserts skip rows a
    concurrent writer saved first (ON CONFLICT DO NOTHING; they are merged in a second
    round), and variables are merged in the database (``||``), losing no concurrent
    change."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self._created = 0  # since the table's statistics were last refreshed
        self._known = 0  # contacts the statistics know the import made, at least

    def existing(self, rows: list[_Row]) -> tuple[dict[str, _Existing], dict[str, _Existing]]:
        with connection.cursor() as cursor:
            cursor.execute(
                _postgres_sql()["existing"],
                [
                    self.campaign.pk,
                    _json([row.phone for row in rows]),
                    self.campaign.pk,
                    _json([row.external_id for row in rows if row.external_id]),
                ],
            )
            return _index(cursor.fetchall())

    def insert(self, rows: list[_Row]) -> set[str]:
        if not rows:
            return set()
        # One order for every import, so that two of them lock index entries alike.
        rows = sorted(rows, key=lambda row: row.phone)
        now = timezone.now()
        params = [
            self.campaign.pk,
            Contact.State.PENDING,
            now,
            now,
            _json([[row.phone, row.time_zone, row.external_id, row.variables] for row in rows]),
        ]
        sql = _postgres_sql()
        # The rows were looked up: a plain insert, the faster one
        # (docs/decisions/0006-contact-import-write-path.md), fails only when someone
        # saved one of them since. Then the insert skips those, to be merged.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql["insert"], params)
            return {row.phone for row in rows}
        except IntegrityError:
            with connection.cursor() as cursor:
                cursor.execute(f"{sql['insert']} {sql['on_conflict']}", params)
                return {phone for (phone,) in cursor.fetchall()}

    def merge(self, contacts: Iterable[_Existing]) -> None:
        changes = sorted(
            (contact.pk, changed) for contact in contacts if (changed := contact.changed())
        )
        if changes:
            with connection.cursor() as cursor:
                cursor.execute(_postgres_sql()["merge"], [timezone.now(), _json(changes)])

    def saved(self, *, created: int) -> None:
        """Refresh the statistics of contacts per campaign each time the import has
        doubled the contacts they know of. Statistics that take a growing campaign for an
        empty one make the planner scan the whole campaign for every batch's look-up, and
        autovacuum may not get to it before the import (or a dispatch) suffers: on a
        large table it waits for a tenth of the rows to change."""
        self._created += created
        if self._created >= max(4 * BATCH_SIZE, self._known):
            table = connection.ops.quote_name(Contact._meta.db_table)
            column = connection.ops.quote_name(Contact._meta.get_field("campaign").column)
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {table} ({column})")
            self._known += self._created
            self._created = 0


def _json(value: Any) -> str:
    # Parameters as one JSON document each: psycopg quotes one string much faster than
    # it adapts a list of thousands (docs/decisions/0006-contact-import-write-path.md).
    return json.dumps(value, ensure_ascii=False)


@cache
def _postgres_sql() -> dict[str, str]:
    def column(name: str) -> str:
        return connection.ops.quote_name(Contact._meta.get_field(name).column)

    table = connection.ops.quote_name(Contact._meta.db_table)
    campaign, phone, external_id = column("campaign"), column("phone"), column("external_id")
    variables, updated_at = column("variables"), column("updated_at")
    returned = f"{column('id')}, {phone}, {external_id}, {variables}"
    # Identifiers come from the model, values are parameters. Look-ups compare with
    # = ANY(ARRAY(…)), which the unique indexes serve whatever the planner believes of the
    # campaign's size (IN (SELECT …) scanned a freshly filled campaign once per row); the
    # external id look-up repeats the partial unique index's condition for the same reason.
    return {
        "existing": (
            f"SELECT {returned} FROM {table} WHERE {campaign} = %s AND {phone} = "  # noqa: S608
            "ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))) "
            f"UNION ALL SELECT {returned} FROM {table} WHERE {campaign} = %s "
            f"AND {external_id} = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))) "
            f"AND {external_id} <> ''"
        ),
        "insert": (
            f"INSERT INTO {table} ({campaign}, {column('state')}, {column('state_reason')}, "  # noqa: S608
            f"{column('attempts')}, {column('created_at')}, {updated_at}, {phone}, "
            f"{column('time_zone')}, {external_id}, {variables}) "
            "SELECT %s, %s, '', 0, %s, %s, new.value ->> 0, new.value ->> 1, "
            "new.value ->> 2, new.value -> 3 FROM jsonb_array_elements(%s::jsonb) AS new(value)"
        ),
        "on_conflict": f"ON CONFLICT DO NOTHING RETURNING {phone}",
        "merge": (
            f"UPDATE {table} AS contact SET {variables} = contact.{variables} || "  # noqa: S608
            f"(changes.value -> 1), {updated_at} = %s "
            "FROM jsonb_array_elements(%s::jsonb) AS changes(value) "
            f"WHERE contact.{column('id')} = (changes.value->>0)::bigint"
        ),
    }
