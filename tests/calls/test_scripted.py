"""Scripted calls, one turn at a time: matching answers, retries and exits."""

from __future__ import annotations

import pytest

from calls.scripted import ScriptedTurn, first_turn, next_turn

STEPS = [
    {
        "id": "confirm",
        "prompt": "¿Vendrá {{ appointment }}?",
        "retry_prompt": "Diga sí o no, o pulse 1 o 2.",
        "answers": [
            {"keywords": ["sí", "claro"], "digit": "1", "next": "end", "outcome": {"ok": True}},
            {"keywords": ["no"], "digit": "2", "next": "reschedule", "outcome": {"ok": False}},
            {"keywords": ["no lo sé"], "digit": "3", "next": "transfer"},
            {"keywords": ["no me llamen más"], "digit": "9", "next": "opt_out"},
        ],
    },
    {
        "id": "reschedule",
        "prompt": "¿Quiere otra cita?",
        "answers": [
            {"keywords": ["sí"], "next": "end", "outcome": {"reschedule": True}},
            {"keywords": ["otra vez"], "next": "confirm"},
        ],
    },
]


def test_first_turn_asks_the_first_step() -> None:
    assert first_turn(STEPS) == ScriptedTurn(
        say="¿Vendrá {{ appointment }}?",
        step_id="confirm",
        exit=None,
        outcome={},
        understood=True,
        retries=0,
    )


def test_first_turn_refuses_no_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        first_turn([])


@pytest.mark.parametrize("speech", ["Sí", "si, claro", "SÍ.", "pues claro que sí"])
def test_next_turn_matches_keywords_without_case_accents_or_punctuation(speech) -> None:
    turn = next_turn(STEPS, step_id="confirm", speech=speech)

    assert (turn.exit, turn.outcome, turn.understood) == ("end", {"ok": True}, True)


def test_next_turn_matches_keywords_as_whole_words() -> None:
    turn = next_turn(STEPS, step_id="confirm", speech="tomé nota")

    assert turn.understood is False


def test_next_turn_matches_a_digit() -> None:
    turn = next_turn(STEPS, step_id="confirm", digits="2")

    assert turn == ScriptedTurn(
        say="¿Quiere otra cita?",
        step_id="reschedule",
        exit=None,
        outcome={"ok": False},
        understood=True,
        retries=0,
    )


def test_next_turn_prefers_the_digit_over_speech() -> None:
    turn = next_turn(STEPS, step_id="confirm", speech="sí", digits="2")

    assert turn.step_id == "reschedule"


def test_next_turn_falls_back_to_speech_when_the_digit_matches_nothing() -> None:
    turn = next_turn(STEPS, step_id="confirm", speech="sí", digits="7")

    assert turn.exit == "end"


def test_next_turn_prefers_the_longest_matched_keyword() -> None:
    # "no" and "no lo sé" both match; the longer one decides
    turn = next_turn(STEPS, step_id="confirm", speech="pues no lo sé")

    assert (turn.exit, turn.outcome) == ("transfer", {})


def test_next_turn_prefers_the_earlier_answer_on_equal_keywords() -> None:
    steps = [
        {
            "id": "ask",
            "prompt": "¿Sí?",
            "answers": [
                {"keywords": ["vale"], "next": "end", "outcome": {"first": True}},
                {"keywords": ["vale"], "next": "transfer"},
            ],
        }
    ]

    turn = next_turn(steps, step_id="ask", speech="vale")

    assert (turn.exit, turn.outcome) == ("end", {"first": True})


@pytest.mark.parametrize(
    ("step_id", "speech", "exit"),
    [
        ("confirm", "claro", "end"),
        ("confirm", "no lo sé", "transfer"),
        ("confirm", "no me llamen más", "opt_out"),
        ("reschedule", "sí", "end"),
    ],
)
def test_next_turn_exits_where_the_answer_leads(step_id, speech, exit) -> None:
    turn = next_turn(STEPS, step_id=step_id, speech=speech, retries=1)

    assert (turn.say, turn.step_id, turn.exit, turn.understood, turn.retries) == (
        "",
        None,
        exit,
        True,
        0,
    )


def test_next_turn_leads_back_to_an_earlier_step_resetting_retries() -> None:
    turn = next_turn(STEPS, step_id="reschedule", speech="otra vez", retries=1)

    assert (turn.say, turn.step_id, turn.retries) == ("¿Vendrá {{ appointment }}?", "confirm", 0)


def test_next_turn_says_the_retry_prompt_when_not_understood() -> None:
    turn = next_turn(STEPS, step_id="confirm", speech="¿cómo dice?")

    assert turn == ScriptedTurn(
        say="Diga sí o no, o pulse 1 o 2.",
        step_id="confirm",
        exit=None,
        outcome={},
        understood=False,
        retries=1,
    )


@pytest.mark.parametrize("retry_prompt", [None, "", "  "])
def test_next_turn_repeats_the_prompt_without_a_retry_prompt(retry_prompt) -> None:
    step = {"id": "ask", "prompt": "¿Sí o no?", "answers": [{"keywords": ["sí"], "next": "end"}]}
    if retry_prompt is not None:
        step["retry_prompt"] = retry_prompt

    turn = next_turn([step], step_id="ask", speech="mmm")

    assert (turn.say, turn.step_id, turn.understood) == ("¿Sí o no?", "ask", False)


def test_next_turn_ends_after_max_retries_not_understood() -> None:
    # given one answer not understood already
    first = next_turn(STEPS, step_id="confirm", speech="eh", max_retries=2)

    # when the next one is not understood either
    second = next_turn(STEPS, step_id="confirm", speech="eh", retries=first.retries, max_retries=2)

    # then the call ends
    assert first.exit is None and first.retries == 1
    assert second == ScriptedTurn(
        say="", step_id=None, exit="end", outcome={}, understood=False, retries=2
    )


def test_next_turn_counts_empty_answers_as_not_understood() -> None:
    turn = next_turn(STEPS, step_id="confirm", retries=1, max_retries=3)

    assert (turn.exit, turn.understood, turn.retries) == (None, False, 2)


def test_next_turn_copies_the_outcome() -> None:
    turn = next_turn(STEPS, step_id="confirm", digits="1")
    turn.outcome["ok"] = "changed"

    assert STEPS[0]["answers"][0]["outcome"] == {"ok": True}


def test_next_turn_refuses_an_unknown_step() -> None:
    with pytest.raises(ValueError, match="'nowhere'"):
        next_turn(STEPS, step_id="nowhere", speech="sí")


def test_next_turn_refuses_an_answer_leading_to_an_unknown_step() -> None:
    steps = [{"id": "ask", "prompt": "¿Sí?", "answers": [{"digit": "1", "next": "gone"}]}]

    with pytest.raises(ValueError, match="'gone'"):
        next_turn(steps, step_id="ask", digits="1")
