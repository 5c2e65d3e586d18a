"""What an import reads and reports: a row as read, its errors and warnings, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

_VALUE_MAX_LENGTH = 1_000  # of a rejected value, as reported


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


@dataclass(slots=True)
class _Row:
    row: int
    phone: str
    time_zone: str
    external_id: str
    variables: dict[str, Any]
    # The legal basis the row gives (imports.basis.read_basis); None: it gives none.
    basis: dict[str, Any] | None = None
    # False when the campaign had no contacts and no earlier row had this phone or
    # external id: then only someone saving meanwhile can have one, and the insert says so.
    may_exist: bool = True


def _clip(value: str) -> str:
    return value if len(value) <= _VALUE_MAX_LENGTH else value[: _VALUE_MAX_LENGTH - 1] + "…"
