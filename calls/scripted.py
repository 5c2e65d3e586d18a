"""One turn of a scripted call: what to say next, given the caller's answer to a step.

Pure, no I/O. Steps are CallTemplate.steps (the format is in templates.models._steps_errors).
The caller renders ``say`` (templates.rendering.render_line) and carries ``step_id`` and
``retries`` from one turn to the next. Opt-out phrases are calls.optout's concern, checked
by the caller whatever the step expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calls.optout import contains_phrase, normalise
from templates.models import STEP_EXITS


@dataclass(frozen=True)
class ScriptedTurn:
    """What the call does next."""

    say: str  # the raw (unrendered) text to say next; "" when the call leaves the script
    step_id: str | None  # the step now waiting for an answer; None on an exit
    exit: str | None  # None, or one of STEP_EXITS: "end", "transfer", "opt_out"
    outcome: dict[str, Any]  # outcome fields set by the matched answer
    understood: bool  # whether the caller's answer matched one of the step's answers
    retries: int  # consecutive not-understood answers on the current step


def first_turn(steps: list[dict[str, Any]]) -> ScriptedTurn:
    """The first step's prompt. ``understood`` is True: there was nothing to understand."""
    if not steps:
        raise ValueError("A scripted call needs at least one step.")
    first = steps[0]
    return ScriptedTurn(
        say=first["prompt"],
        step_id=first["id"],
        exit=None,
        outcome={},
        understood=True,
        retries=0,
    )


def next_turn(
    steps: list[dict[str, Any]],
    *,
    step_id: str,
    speech: str = "",
    digits: str = "",
    retries: int = 0,
    max_retries: int = 2,
) -> ScriptedTurn:
    """The turn after the caller answered ``step_id`` with ``speech`` or ``digits``.

    An answer matches by its digit first, then by its keywords (the longest matched keyword
    wins, then the earlier answer). A matched answer leads to its ``next`` step's prompt or
    exit. An unmatched one repeats the step's retry prompt (or its prompt), until the
    ``max_retries``-th unmatched answer in a row, which ends the call. ValueError when
    ``step_id`` or an answer's ``next`` is not a step of ``steps``.
    """
    step = _step(steps, step_id)
    answer = _matched_answer(step.get("answers", []), speech=speech, digits=digits)
    if answer is None:
        retries += 1
        if retries >= max_retries:
            return ScriptedTurn(
                say="", step_id=None, exit="end", outcome={}, understood=False, retries=retries
            )
        retry_prompt = step.get("retry_prompt") or ""
        return ScriptedTurn(
            say=retry_prompt if retry_prompt.strip() else step["prompt"],
            step_id=step_id,
            exit=None,
            outcome={},
            understood=False,
            retries=retries,
        )
    # A copy: the turn must not share a dict with the template's steps.
    outcome = dict(answer.get("outcome") or {})
    target = answer["next"]
    if target in STEP_EXITS:
        return ScriptedTurn(
            say="", step_id=None, exit=target, outcome=outcome, understood=True, retries=0
        )
    following = _step(steps, target)
    return ScriptedTurn(
        say=following["prompt"],
        step_id=target,
        exit=None,
        outcome=outcome,
        understood=True,
        retries=0,
    )


def _step(steps: list[dict[str, Any]], step_id: str) -> dict[str, Any]:
    for step in steps:
        if step.get("id") == step_id:
            return step
    raise ValueError(f"No scripted step has the id {step_id!r}.")


def _matched_answer(
    answers: list[dict[str, Any]], *, speech: str, digits: str
) -> dict[str, Any] | None:
    pressed = digits.strip()
    if pressed:
        for answer in answers:
            if answer.get("digit") == pressed:
                return answer
    words = tuple(normalise(speech).split())
    best, best_length = None, (0, 0)
    for answer in answers:
        for keyword in answer.get("keywords", []):
            phrase = tuple(normalise(keyword).split())
            # Longest in words, then in letters; ">" keeps the earlier answer on a tie.
            length = (len(phrase), sum(map(len, phrase)))
            if length > best_length and contains_phrase(words, phrase):
                best, best_length = answer, length
    return best
