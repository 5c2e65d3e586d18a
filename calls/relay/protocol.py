"""ConversationRelay's messages, as Twilio documents them
(twilio.com/docs/voice/conversationrelay/websocket-messages): what Twilio sends us, read
and checked (``read``), and what we send it (``text``, ``end``).

Twilio sends JSON text frames: ``setup`` once the socket is open, ``prompt`` (the caller's
words, ``last`` true when they finished speaking), ``dtmf`` (a key), ``interrupt`` (the
caller spoke over us: what they heard of our line), ``error`` and, with debugging on,
``info``. We send ``text`` tokens (``last`` true on a reply's final one) and ``end``
(with ``handoffData``, a string Twilio passes to the ``<Connect>`` action as HandoffData).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# A frame larger than this is not one of Twilio's (a prompt is a sentence or a few).
MAX_FRAME_CHARS = 64 * 1024


class Unreadable(ValueError):
    """A frame that is not one of Twilio's messages; the text says what is wrong."""


@dataclass(frozen=True)
class Setup:
    call_sid: str
    session_id: str
    custom: dict[str, str]


@dataclass(frozen=True)
class Prompt:
    words: str
    last: bool
    language: str


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Interrupt:
    heard: str
    heard_ms: int | None


@dataclass(frozen=True)
class Error:
    description: str


@dataclass(frozen=True)
class Info:
    data: dict[str, Any]


Message = Setup | Prompt | Dtmf | Interrupt | Error | Info

KEYS = frozenset("0123456789*#ABCDabcdw")


def read(frame: str | bytes | None) -> Message:
    """The message in a text frame; Unreadable when it is not one (a binary frame, not
    JSON, not an object, an unknown type, a field of the wrong type)."""
    if not isinstance(frame, str):
        raise Unreadable("a binary frame: ConversationRelay sends JSON text")
    if len(frame) > MAX_FRAME_CHARS:
        raise Unreadable(f"a frame of {len(frame)} characters")
    try:
        data = json.loads(frame)
    except ValueError as exc:
        raise Unreadable(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise Unreadable("not a JSON object")
    kind = data.get("type")
    if kind == "setup":
        custom = data.get("customParameters") or {}
        if not isinstance(custom, dict):
            raise Unreadable("setup: customParameters is not an object")
        return Setup(
            call_sid=_text(data, "callSid"),
            session_id=_text(data, "sessionId", required=False),
            custom={str(name): str(value) for name, value in custom.items()},
        )
    if kind == "prompt":
        last = data.get("last", True)
        if not isinstance(last, bool):
            raise Unreadable("prompt: last is not a boolean")
        return Prompt(
            words=_text(data, "voicePrompt", required=False),
            last=last,
            language=_text(data, "lang", required=False),
        )
    if kind == "dtmf":
        digit = _text(data, "digit")
        if len(digit) != 1 or digit not in KEYS:
            raise Unreadable(f"dtmf: {digit!r} is not a key")
        return Dtmf(digit=digit)
    if kind == "interrupt":
        duration = data.get("durationUntilInterruptMs")
        if duration is not None and (
            not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0
        ):
            raise Unreadable("interrupt: durationUntilInterruptMs is not a duration")
        return Interrupt(
            heard=_text(data, "utteranceUntilInterrupt", required=False),
            heard_ms=None if duration is None else int(duration),
        )
    if kind == "error":
        return Error(description=_text(data, "description", required=False))
    if kind == "info":
        return Info(data=data)
    raise Unreadable(f"unknown message type {kind!r}")


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise Unreadable(
            f"{data.get('type')}: {name} is {'missing' if value is None else 'not text'}"
        )
    return value


def text(token: str, *, last: bool, interruptible: bool = True) -> str:
    """A ``text`` message: ``token`` to speak, ``last`` on a talk cycle's final one."""
    message: dict[str, Any] = {"type": "text", "token": token, "last": last}
    if not interruptible:
        message["interruptible"] = False
    return json.dumps(message, ensure_ascii=False)


def end(handoff: dict[str, Any]) -> str:
    """An ``end`` message: Twilio ends the session and passes ``handoff`` (as JSON text)
    to the ``<Connect>`` action as HandoffData."""
    return json.dumps({"type": "end", "handoffData": json.dumps(handoff)})
