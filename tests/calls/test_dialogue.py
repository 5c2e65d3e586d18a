"""The dialogue state kept on a call: read from and written to the same JSON as ever."""

from __future__ import annotations

import pytest

from calls.dialogue import Dialogue


@pytest.mark.parametrize(
    "kept",
    [
        {"silences": 0, "retries": 0},  # an AI call, answered
        {"silences": 1, "retries": 2, "step": "confirm"},  # a scripted call, on a step
        {"silences": 0, "retries": 0, "step": None, "ended": True, "closed": "script end"},
        {"silences": 0, "retries": 0, "transferred": False},  # nobody took the transfer
        {"silences": 0, "retries": 0, "missed_call_at": "2026-11-29T10:00:00+01:00"},
        {"silences": 0, "retries": 0, "a key of tomorrow": [1, 2]},  # unknown keys are kept
    ],
)
def test_dialogue_writes_back_the_json_it_read(kept) -> None:
    assert Dialogue.from_json(kept).to_json() == kept


def test_dialogue_of_a_call_not_answered_yet_starts_counting() -> None:
    assert Dialogue.from_json(None) == Dialogue()
    assert Dialogue.from_json({}).to_json() == {"silences": 0, "retries": 0}


def test_dialogue_reads_what_inbound_left_and_keeps_it() -> None:
    inbound = {"missed_call_at": "2026-11-29T10:00:00+01:00"}
    answered = Dialogue.from_json(inbound).but(silences=0, retries=0)
    assert answered.missed_call_at == inbound["missed_call_at"]
    assert answered.to_json() == {**inbound, "silences": 0, "retries": 0}


def test_dialogue_ignores_values_of_the_wrong_type() -> None:
    dialogue = Dialogue.from_json({"silences": "2", "retries": True, "step": 3, "closed": 1})
    assert (dialogue.silences, dialogue.retries, dialogue.step, dialogue.closed) == (0, 0, None, "")
    assert dialogue.scripted  # a step was kept: the call follows a script
