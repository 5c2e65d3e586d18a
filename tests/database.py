"""Helpers for tests that exercise database constraints."""

from __future__ import annotations

from collections.abc import Callable

from django.db import IntegrityError, transaction


def violates(create: Callable[[], object]) -> bool:
    """True when the database refuses what ``create()`` writes (inside a savepoint)."""
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False
