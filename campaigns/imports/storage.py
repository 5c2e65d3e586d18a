"""Saving checked rows: a batch at a time in a thread of its own, merged into the contacts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.eligibility import needed_variables
from campaigns.imports.base import ImportResult, RowError, RowWarning, _clip, _Row
from campaigns.imports.basis import save_bases
from campaigns.models import BASIS_FIELDS, Campaign, Contact

BATCH_SIZE = 10_000


_SAVE_ATTEMPTS = 3
_DEADLOCK = "40P01"


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


@dataclass(slots=True, eq=False)  # compared, and hashed, by identity
class _Existing:
    """A contact already in the campaign, and the variables rows of the batch give it."""

    pk: int
    variables: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    phone: str = ""
    basis: dict[str, Any] | None = None  # the last basis a row of the batch gives it

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
                    row.row,
                    row.phone,
                    row.time_zone,
                    row.external_id,
                    dict(row.variables),
                    row.basis,
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
            if row.basis is not None:
                target.basis = row.basis
        found = {*by_phone.values(), *by_external_id.values()}
        store.merge(found)
        inserted = store.insert(list(new.values()))
        created += len(inserted)
        save_bases(
            campaign=store.campaign,
            existing=[(contact.pk, contact.basis) for contact in found if contact.basis],
            created=[
                (phone, row.basis) for phone, row in new.items() if row.basis and phone in inserted
            ],
        )
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
        found: list[tuple[int, str, str, Any]] = []
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
                        **(row.basis or {}),
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
        params: list[Any] = [
            self.campaign.pk,
            Contact.State.PENDING,
            now,
            now,
            _json(
                [
                    [row.phone, row.time_zone, row.external_id, row.variables, *_basis_cells(row)]
                    for row in rows
                ]
            ),
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


def _basis_cells(row: _Row) -> list[Any]:
    """The row's basis as the insert reads it: BASIS_FIELDS in order, times in ISO 8601."""
    basis = row.basis or {}
    cells = []
    for name in BASIS_FIELDS:
        value = basis.get(name)
        if name.endswith("_at"):
            cells.append(None if value is None else value.isoformat())
        else:
            cells.append(value or "")
    return cells


def _json(value: Any) -> str:
    # Parameters as one JSON document each: psycopg quotes one string much faster than
    # it adapts a list of thousands (docs/decisions/0006-contact-import-write-path.md).
    return json.dumps(value, ensure_ascii=False)


@cache
def _postgres_sql() -> dict[str, str]:
    def column(name: str) -> str:
        # Columns of the contact's own fields, never a relation's other side (no column).
        return connection.ops.quote_name(Contact._meta.get_field(name).column)  # type: ignore[union-attr, arg-type]

    table = connection.ops.quote_name(Contact._meta.db_table)
    campaign, phone, external_id = column("campaign"), column("phone"), column("external_id")
    variables, updated_at = column("variables"), column("updated_at")
    returned = f"{column('id')}, {phone}, {external_id}, {variables}"
    # The legal basis after the variables (_basis_cells): times cast from ISO 8601.
    basis_columns = ", ".join(column(name) for name in BASIS_FIELDS)
    basis_values = ", ".join(
        f"(new.value ->> {index})::timestamptz"
        if name.endswith("_at")
        else f"new.value ->> {index}"
        for index, name in enumerate(BASIS_FIELDS, start=4)
    )
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
            f"{column('time_zone')}, {external_id}, {variables}, {basis_columns}) "
            "SELECT %s, %s, '', 0, %s, %s, new.value ->> 0, new.value ->> 1, "
            f"new.value ->> 2, new.value -> 3, {basis_values} "
            "FROM jsonb_array_elements(%s::jsonb) AS new(value)"
        ),
        "on_conflict": f"ON CONFLICT DO NOTHING RETURNING {phone}",
        "merge": (
            f"UPDATE {table} AS contact SET {variables} = contact.{variables} || "  # noqa: S608
            f"(changes.value -> 1), {updated_at} = %s "
            "FROM jsonb_array_elements(%s::jsonb) AS changes(value) "
            f"WHERE contact.{column('id')} = (changes.value->>0)::bigint"
        ),
    }
