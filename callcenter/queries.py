"""Query helpers shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models import CharField, F, Func, Model, QuerySet
from django.db.models.constants import OnConflict


def one_or_none(queryset: QuerySet) -> Any:
    """The one row of ``queryset`` (a lookup by a unique key), or None.

    Unlike ``.first()`` it adds no ORDER BY: on a webhook's wide ``select_related`` query,
    compiling the ordering the model's Meta asks for cost more CPU than the query itself.
    """
    try:
        return queryset.get()
    except queryset.model.DoesNotExist:
        return None


def insert_unless_taken(instance: Model) -> bool:
    """INSERT ``instance`` unless a unique constraint already holds an equal row: True
    when it was inserted (its primary key is then set), False when the row was taken.

    One statement (``INSERT ... ON CONFLICT DO NOTHING RETURNING``), so a lost race needs
    no savepoint around it, as ``create()`` in a transaction does (two more round trips),
    and leaves no error in the database's log. Like ``create()`` it fills ``auto_now``
    fields and defaults; it sends no ``pre_save``/``post_save`` signals, like
    ``bulk_create()``, whose building block (``QuerySet._insert``) it uses too.
    """
    model = type(instance)
    meta = model._meta
    using = router.db_for_write(model, instance=instance)
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and not (field is meta.auto_field and instance.pk is None)
    ]
    returning = meta.db_returning_fields
    # QuerySet._insert (which the manager proxies) is Django's private API: not in the stubs.
    [row] = model._base_manager._insert(  # type: ignore[attr-defined]
        [instance],
        fields=fields,
        returning_fields=returning,
        using=using,
        on_conflict=OnConflict.IGNORE,
    )
    if row is None:  # RETURNING gave no row: nothing was inserted
        return False
    for value, field in zip(row, returning, strict=True):
        setattr(instance, field.attname, value)
    instance._state.adding = False
    instance._state.db = using
    return True


def json_keys(queryset: QuerySet, field: str) -> set[str]:
    """The keys of the JSON objects in ``field`` across ``queryset``, each once.

    PostgreSQL lists them itself (``jsonb_object_keys``, values that are no object left
    out) and sends each key once; other databases send every value to be read here.
    """
    queryset = queryset.order_by()
    if connections[queryset.db].vendor == "postgresql":
        kind = Func(F(field), function="jsonb_typeof", output_field=CharField())
        keys = Func(F(field), function="jsonb_object_keys", output_field=CharField())
        return set(
            queryset.alias(json_kind=kind)
            .filter(json_kind="object")
            .annotate(json_key=keys)
            .values_list("json_key", flat=True)
            .distinct()
        )
    found: set[str] = set()
    for value in queryset.values_list(field, flat=True).iterator(chunk_size=2000):
        if isinstance(value, dict):
            found.update(value)
    return found
