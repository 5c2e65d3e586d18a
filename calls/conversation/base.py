"""What the OpenAI adapter gives and raises: its errors, the values it returns, its
constants, and whether it is configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _

# The statuses the SDK itself would retry, beside 5xx: a retry may help.
TRANSIENT_STATUSES = frozenset({408, 409, 429})
# A turn may take this much longer than the wait for its first chunk (see stream_reply).
TOTAL_TIMEOUT_FACTOR = 3
MIN_TOTAL_TIMEOUT = 10.0
# Extraction runs in a task, off the call: it may wait and write longer than a turn does.
EXTRACTION_TIMEOUT = 60.0
EXTRACTION_MAX_TOKENS = 1024
EXTRACTION_TEMPERATURE = 0.0
# Off the call, a reasoning model reasons at least this much on the outcome (every
# reasoning family takes it).
EXTRACTION_REASONING_EFFORT = "low"
# OpenAI's rule of thumb: a token is about 4 characters of English text ("What are tokens
# and how to count them", help.openai.com). MAX_TOKENS bounds the spoken reply by it.
CHARS_PER_TOKEN = 4
# The names of the reply's token bound: OpenAI's, and the deprecated one that some
# OpenAI-compatible servers still need (OPENAI_TOKEN_PARAMETER).
TOKEN_PARAMETERS = ("max_completion_tokens", "max_tokens")
# The values of reasoning_effort, least reasoning first.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")

SentenceCallback = Callable[[str], Awaitable[Any]]


class ConversationUnavailable(Exception):
    """A transient failure (timeout, connection error, 429, 5xx): a retry may help.

    `reason` is a translated explanation for staff; `status` the HTTP status when there
    was one; `timed_out` whether the model was too slow rather than failing.
    """

    def __init__(
        self, message: str, *, reason: str, status: int | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.timed_out = timed_out


class ConversationRejected(Exception):
    """A permanent failure: the request was refused (bad key, bad request) and repeating it
    will not help. `status` is 0 when it was refused before sending; `parameter` names the
    model-dependent parameter a 400 refused as unsupported, when it names one."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int,
        provider_message: str,
        parameter: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.provider_message = provider_message
        self.parameter = parameter


class ConversationNotConfigured(ConversationRejected):
    """No OPENAI_API_KEY is set; no request was made."""

    def __init__(self) -> None:
        super().__init__(
            "OpenAI is not configured: OPENAI_API_KEY is not set",
            reason=str(_("The AI model is not configured: OPENAI_API_KEY is not set.")),
            status=0,
            provider_message="",
        )


@dataclass(frozen=True)
class Action:
    """One tool call of the model, with arguments valid against its tool's parameters."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the model said in a turn (possibly "" when it only acted) and what it did.

    `text` is what was handed to `on_sentence`; `actions` are the valid tool calls of all
    the turn's requests (a reply of tools alone, then its continuation). The token counts
    add up every request of the turn (None when none reported its usage); `model` is the
    model asked.
    """

    text: str
    actions: tuple[Action, ...]
    model_ms: int
    first_sentence_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str = ""


@dataclass(frozen=True)
class Extraction:
    """The outcome of a call as the template's schema describes it, or why it is missing;
    the model asked and the tokens of all its attempts (None when none reported usage)."""

    data: dict[str, Any] | None
    summary: str
    raw: str
    failed: bool
    error: str
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def is_configured() -> bool:
    """Whether an OpenAI API key is set (an OpenAI-compatible server still needs one)."""
    return bool(settings.OPENAI_API_KEY)
