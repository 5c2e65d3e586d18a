"""The query helpers: one statement where Django would take several."""

from __future__ import annotations

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from callcenter.queries import insert_unless_taken
from calls.models import CallEvent


def event(**fields) -> CallEvent:
    return CallEvent(
        provider_sid="CA" + "1" * 32,
        kind=CallEvent.Kind.STATUS,
        sequence_number=fields.pop("sequence_number", 1),
        payload=fields.pop("payload", {"CallStatus": "ringing"}),
        **fields,
    )


@pytest.mark.django_db
def test_insert_unless_taken_inserts_and_sets_the_primary_key() -> None:
    first = event()

    assert insert_unless_taken(first) is True

    assert first.pk is not None
    assert not first._state.adding
    stored = CallEvent.objects.get(pk=first.pk)
    assert stored.payload == {"CallStatus": "ringing"}
    assert stored.received_at is not None  # auto_now_add filled, as create() does


@pytest.mark.django_db
def test_insert_unless_taken_leaves_a_taken_row_alone_in_one_statement() -> None:
    insert_unless_taken(event(payload={"CallStatus": "ringing"}))
    duplicate = event(payload={"CallStatus": "changed"})

    with transaction.atomic():
        with CaptureQueriesContext(connections["default"]) as queries:
            taken = insert_unless_taken(duplicate)
        # no savepoint, and the transaction is still usable
        assert CallEvent.objects.count() == 1

    assert taken is False
    assert duplicate.pk is None
    assert len(queries.captured_queries) == 1
    assert CallEvent.objects.get().payload == {"CallStatus": "ringing"}
