"""Checking rows one by one, from a CSV file or JSON: phone, time zone, external id, variables."""

from __future__ import annotations

import json
import sys
import zoneinfo
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from audit.keys import subject_hash
from campaigns.imports.base import ImportResult, RowError, RowWarning, _clip, _Row
from campaigns.imports.basis import read_json_basis
from campaigns.imports.storage import (
    BATCH_SIZE,
    _Batch,
    _close_connection,
    _commit_asynchronously,
    _Writer,
)
from campaigns.models import BASIS_FIELDS, ERASED_NUMBER_MESSAGE, Campaign, Contact, ErasedNumber
from campaigns.phones import PhoneReader

# A CharField's max_length, which is always set (the stub allows None).
_EXTERNAL_ID_MAX_LENGTH: int = Contact._meta.get_field("external_id").max_length  # type: ignore[assignment]


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
        # Numbers erased at their owners' request (privacy.erasure), by keyed hash.
        self._erased = ErasedNumber.objects.digests_for(partner_id=campaign.partner_id)
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
        basis: dict[str, Any] | None = None,
    ) -> None:
        """Check row ``number`` (a row's fields stripped, but for the phone) and keep it
        for the batch, or reject it with its ``problems`` and those found here. ``basis``:
        its legal basis, as ``imports.basis.read_basis`` reads it."""
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
            else:
                if self._erased and subject_hash(phone) in self._erased:
                    errors.append(RowError(number, "phone", "", str(ERASED_NUMBER_MESSAGE)))
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
        row = _Row(number, phone, time_zone, external_id, variables, basis)
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
    # One of the contact's own fields, never a relation's other side (no verbose name).
    return str(Contact._meta.get_field(name).verbose_name)  # type: ignore[union-attr]


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
    basis, basis_problems = read_json_basis(number, row)
    problems.extend(basis_problems)
    importer.add(number, variables=variables, problems=problems, basis=basis, **texts)


_JSON_FIELDS = frozenset({"phone", "time_zone", "external_id", "variables", *BASIS_FIELDS})


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
