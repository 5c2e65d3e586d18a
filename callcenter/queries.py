"""Query helpers shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


def one_or_none(queryset: QuerySet) -> Any:
    """The one row of ``queryset`` (a lookup by a unique key), or None.

    Unlike ``.first()`` it adds no ORDER BY: on a webhook's wide ``select_related`` query,
    compiling the ordering the model's Meta asks for cost more CPU than the query itself.
    """
    try:
        return queryset.get()
    except queryset.model.DoesNotExist:
        return None
