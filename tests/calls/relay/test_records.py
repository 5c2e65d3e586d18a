"""What a relay call's socket writes, against the real database: a streamed reply is
recorded after the caller's words even when the model finished before those words were
committed (the model is asked while the caller's turn is written)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from calls import transports
from calls.conversation import Reply
from calls.dialogue import add_turn
from calls.model_turns import record_streamed_reply
from calls.models import Call, Turn
from tests.calls.relay.conftest import answered

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reply_recorded_while_the_callers_turn_is_written_follows_it(relay_call) -> None:
    # given the caller's turn being written, the call's row locked (as prepare_turn does)
    answered(relay_call)
    written, release = threading.Event(), threading.Event()
    problems: list[BaseException] = []

    def callers_turn() -> None:
        try:
            with transaction.atomic():
                call = Call.objects.select_for_update().get(pk=relay_call.pk)
                add_turn(call, role=Turn.Role.CALLER, text="Sí.", sequence=1)
                written.set()
                release.wait(10)
        finally:
            connection.close()

    def reply() -> None:
        try:
            call = Call.objects.select_related("campaign__template", "contact").get(
                pk=relay_call.pk
            )
            with transports.on_relay_socket():
                record_streamed_reply(
                    call,
                    Reply("Perfecto.", (), 5, 5, 10, 3),
                    model_ms=5,
                    response_ms=5,
                )
        except BaseException as problem:  # noqa: BLE001 - reported to the test
            problems.append(problem)
        finally:
            connection.close()

    writer = threading.Thread(target=callers_turn)
    writer.start()
    assert written.wait(10)
    assert problems == []

    # when the streamed reply is recorded meanwhile (it waits for the lock)
    recorder = threading.Thread(target=reply)
    recorder.start()
    time.sleep(0.5)
    release.set()
    writer.join(10)
    recorder.join(10)

    # then it comes after the caller's words
    assert problems == []
    assert list(relay_call.turns.order_by("sequence").values_list("sequence", "role", "text"))[
        1:
    ] == [(1, "caller", "Sí."), (2, "agent", "Perfecto.")]
