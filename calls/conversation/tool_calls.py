"""The model's tool calls: assembled from their streamed fragments, checked against the
call's tools (`calls.agent`), answered with their results."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from callcenter.metrics import MODEL_ERRORS
from calls.agent import _CallTools
from calls.conversation.base import Action

logger = logging.getLogger(__name__)


# --- Tool calls -----------------------------------------------------------------------------


@dataclass
class _ToolCallParts:
    """A tool call as its streamed fragments arrive."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def add(self, piece: dict[str, Any]) -> None:
        if piece.get("id") and not self.id:
            self.id = str(piece["id"])
        function = piece.get("function") or {}
        if function.get("name") and not self.name:
            self.name = function["name"]
        if function.get("arguments"):
            self.arguments += function["arguments"]


def _check_call(parts: _ToolCallParts, tools: _CallTools) -> tuple[Action | None, str]:
    """The tool call as an Action and "", or None (and a warning) and what is wrong with
    it, in words for the model (the log names the problem without the values): a tool the
    call offers, with arguments valid against its parameters and, for record_answer, a
    value valid against its outcome field's schema."""
    name = parts.name
    problem = logged = ""
    arguments: Any = None
    validator = tools.validators.get(name)
    if validator is None:
        problem = logged = f"there is no tool named {name[:64]!r}"
    else:
        try:
            arguments = json.loads(parts.arguments) if parts.arguments.strip() else {}
        except ValueError:
            problem = logged = "the arguments are not valid JSON"
        else:
            logged = _schema_problem(validator, arguments, redacted=True)
            if logged:
                problem = _schema_problem(validator, arguments, redacted=False)
            elif name == "record_answer":
                answer = tools.answers[arguments["field"]]
                value = arguments.get("value")
                logged = _schema_problem(answer, value, redacted=True)
                if logged:
                    field = arguments["field"]
                    problem = f"value of {field}: {_schema_problem(answer, value, redacted=False)}"
                    logged = f"value of {field}: {logged}"
            elif name == "schedule_callback":
                at = _local_datetime(arguments["at"])
                if at is None:
                    problem = logged = "`at` is not an ISO 8601 date and time"
                else:
                    arguments["at"] = at.isoformat()
    if problem:
        # The arguments may hold what the person said: the log names the problem only.
        MODEL_ERRORS.labels(reason="invalid_output").inc()
        logger.warning("Dropped the model's tool call %r: %s", name[:64], logged)
        return None, problem
    return Action(name=name, arguments=arguments), ""


def _tool_results(
    calls: list[_ToolCallParts], checked: list[tuple[Action | None, str]]
) -> list[dict[str, Any]]:
    """The messages that answer a reply of tool calls alone: the assistant's message with
    its `tool_calls`, then one `tool` message per call, with what was done or why nothing
    was."""
    asked = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": parts.id,
                "type": "function",
                "function": {
                    "name": parts.name or "unknown",
                    # As the model wrote them, if a server is to take them back.
                    "arguments": parts.arguments if _is_json(parts.arguments) else "{}",
                },
            }
            for parts in calls
        ],
    }
    answers = [
        {
            "role": "tool",
            "tool_call_id": parts.id,
            "content": json.dumps(_tool_result(action, problem), ensure_ascii=False),
        }
        for parts, (action, problem) in zip(calls, checked, strict=True)
    ]
    return [asked, *answers]


def _tool_result(action: Action | None, problem: str) -> dict[str, Any]:
    """A tool's result for the model: what was recorded or scheduled, or the problem."""
    if action is None:
        return {"ok": False, "error": f"Nothing was done: {problem}."}
    if action.name == "record_answer":
        return {"ok": True, "recorded": {action.arguments["field"]: action.arguments.get("value")}}
    if action.name == "schedule_callback":
        note = action.arguments.get("note")
        return {
            "ok": True,
            "callback_at": action.arguments["at"],
            **({"note": note} if note else {}),
        }
    return {"ok": True}


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _local_datetime(text: str) -> datetime.datetime | None:
    """`text` as a naive local date-time; an offset the model added is dropped, as the
    prompt asks for the person's wall-clock time."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if len(text.strip()) < len("2026-11-29T10:00"):  # a date alone would mean midnight
        return None
    return value.replace(tzinfo=None)


def _schema_problem(validator: Draft202012Validator, instance: Any, *, redacted: bool) -> str:
    """What makes `instance` invalid ("" when it is valid); `redacted` leaves the values
    out, for logs."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return "; ".join(_error_text(error, redacted=redacted) for error in errors[:5])


def _error_text(error: ValidationError, *, redacted: bool) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    detail = f"fails {error.validator!r}" if redacted else error.message
    return f"{where}: {detail}"
