"""A finished call's outcome read from its transcript by the model (`extract_outcome`)."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from callcenter.metrics import MODEL_ERRORS, MODEL_SECONDS
from calls.agent import language_name
from calls.conversation.base import (
    EXTRACTION_MAX_TOKENS,
    EXTRACTION_TIMEOUT,
    ConversationNotConfigured,
    Extraction,
    is_configured,
)
from calls.conversation.client import _client, _failure, _since
from calls.conversation.models import _create_adapting, _extraction_request, _Tally
from calls.conversation.tool_calls import _schema_problem

logger = logging.getLogger(__name__)


def extract_outcome(
    *, transcript: list[dict[str, str]], schema: dict[str, Any], language: str
) -> Extraction:
    """The call's outcome, valid against `schema` (a JSON Schema; {} allows any object),
    and a one-or-two-sentence summary in `language`.

    The answer's JSON object is read from its text (code fences and words around it are
    left out, for a model without JSON mode). An invalid answer is retried once, telling
    the model what was wrong; a second one gives Extraction(failed=True). Raises
    ConversationUnavailable (the task may retry) or ConversationRejected.
    """
    if not is_configured():
        MODEL_ERRORS.labels(reason="rejected").inc()
        raise ConversationNotConfigured
    model = settings.DEFAULT_MODEL
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return Extraction(
            data=None,
            summary="",
            raw="",
            failed=True,
            error=str(
                _("The template's outcome schema is not valid: %(error)s") % {"error": exc.message}
            ),
            model=model,
        )
    validator = Draft202012Validator(schema)
    client = _client(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        timeout=EXTRACTION_TIMEOUT,
    )
    messages: list[dict[str, str]] = [
        {"role": "system", "content": _extraction_prompt(schema=schema, language=language)},
        {"role": "user", "content": _transcript_text(transcript)},
    ]
    tally = _Tally()
    raw = ""
    outcome = _Outcome(data=None, summary="", problem="", error="")
    for attempt in (1, 2):
        raw = _complete_json(client, messages, model=model, tally=tally)
        outcome = _parse_outcome(raw, validator)
        if not outcome.problem:
            return Extraction(
                data=outcome.data,
                summary=outcome.summary,
                raw=raw,
                failed=False,
                error="",
                model=model,
                prompt_tokens=tally.prompt,
                completion_tokens=tally.completion,
            )
        MODEL_ERRORS.labels(reason="invalid_output").inc()
        logger.warning("Outcome extraction attempt %d was not valid: %s", attempt, outcome.error)
        messages += [
            {"role": "assistant", "content": raw},
            {
                "role": "user",
                "content": f"Your answer was not valid: {outcome.problem}\n"
                "Answer again with only the corrected JSON object.",
            },
        ]
    return Extraction(
        data=None,
        summary=outcome.summary,
        raw=raw,
        failed=True,
        error=outcome.error,
        model=model,
        prompt_tokens=tally.prompt,
        completion_tokens=tally.completion,
    )


# --- Extraction -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    data: dict[str, Any] | None
    summary: str
    problem: str  # for the model, in English ("" when valid)
    error: str  # for staff, translated


def _extraction_prompt(*, schema: dict[str, Any], language: str) -> str:
    # "Only the JSON object": a model without JSON mode is asked in words.
    return (
        "You read the transcript of a phone call and report its outcome as JSON.\n"
        'Answer with one JSON object: {"outcome": {...}, "summary": "..."}.\n'
        "- outcome: an object valid against this JSON Schema (use null where the call did "
        f"not tell and the schema allows it):\n{json.dumps(schema, ensure_ascii=False)}\n"
        f"- summary: one or two sentences on how the call went, in "
        f"{language_name(language)}.\n"
        "Use only what the transcript says. Answer with only the JSON object: no words "
        "before or after it, no code fences."
    )


def _transcript_text(transcript: list[dict[str, str]]) -> str:
    speakers = {"assistant": "Agent", "user": "Person"}
    lines = [
        f"{speakers.get(turn.get('role', ''), 'Other')}: {turn.get('content', '')}"
        for turn in transcript
    ]
    return "Transcript:\n" + ("\n".join(lines) if lines else "(nothing was said)")


def _complete_json(
    client: openai.OpenAI, messages: list[dict[str, str]], *, model: str, tally: _Tally
) -> str:
    def build() -> dict[str, Any]:
        return _extraction_request(
            model=model, messages=messages, output_tokens=EXTRACTION_MAX_TOKENS
        )

    started = time.perf_counter()
    try:
        completion = _create_adapting(client, model=model, build=build)
    except openai.APIError as exc:
        raise _failure(exc, api_key=settings.OPENAI_API_KEY) from exc
    finally:
        MODEL_SECONDS.labels(kind="extraction").observe(_since(started))
    reasoning_tokens = tally.add(completion.usage, model=model)
    if not completion.choices:
        return ""
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        logger.warning(
            "Model %s's outcome was cut at its token bound (%s reasoning tokens).",
            model,
            reasoning_tokens,
        )
    return choice.message.content or ""


# Code fences around an answer: ```json ... ```.
_FENCED = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)


def _json_answer(raw: str) -> Any:
    """The JSON of an answer: all of it, else a fenced block's, else the first object in
    its text (a model without JSON mode may wrap it). Raises the whole text's ValueError
    when no JSON is found."""
    text = raw.strip()
    try:
        return json.loads(text)
    except ValueError as exc:
        error = exc
    for block in _FENCED.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for start in [found.start() for found in re.finditer(r"\{", text)][:20]:
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise error


def _parse_outcome(raw: str, validator: Draft202012Validator) -> _Outcome:
    try:
        answer = _json_answer(raw)
    except ValueError as exc:
        return _Outcome(
            data=None,
            summary="",
            problem=f"it is not valid JSON ({exc}).",
            error=str(_("The model's answer is not valid JSON: %(error)s") % {"error": exc}),
        )
    summary = answer.get("summary") if isinstance(answer, dict) else None
    summary = summary.strip() if isinstance(summary, str) else ""
    if not isinstance(answer, dict) or not isinstance(answer.get("outcome"), dict):
        return _Outcome(
            data=None,
            summary=summary,
            problem='it must be a JSON object with an "outcome" object and a "summary" string.',
            error=str(_("The model's answer has no outcome object.")),
        )
    outcome = answer["outcome"]
    problem = _schema_problem(validator, outcome, redacted=False)
    if problem:
        return _Outcome(
            data=None,
            summary=summary,
            problem=f"the outcome does not match the schema: {problem}",
            error=str(
                _("The outcome does not match the template's schema: %(errors)s")
                % {"errors": problem}
            ),
        )
    return _Outcome(data=outcome, summary=summary, problem="", error="")
