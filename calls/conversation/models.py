"""What each model takes: its traits by name, what its server taught (`_adapt`), the
requests' model-dependent parameters, and the tokens each request used."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings

from callcenter.metrics import MODEL_TOKENS
from calls.agent import TOOLS
from calls.conversation.base import (
    EXTRACTION_REASONING_EFFORT,
    EXTRACTION_TEMPERATURE,
    REASONING_EFFORTS,
    TOKEN_PARAMETERS,
)
from calls.conversation.client import _provider_message

logger = logging.getLogger(__name__)


# --- Models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTraits:
    """What a model takes, as its name tells: whether it reasons (no temperature but the
    default, reasoning counted in its token bound), whether it has JSON mode, and the
    reasoning_effort a live call asks of it (None: not a reasoning model)."""

    reasoning: bool
    json_mode: bool
    effort: str | None


# A dated snapshot's suffix: gpt-4o-mini-2024-07-18, gpt-4-0613.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@functools.lru_cache(maxsize=64)
def model_traits(model: str) -> ModelTraits:
    """The traits of `model` (a snapshot is its model's; "openai/gpt-5" is gpt-5).

    From OpenAI's documentation: the original gpt-4 (and gpt-4-32k, 0314 and 0613) has no
    JSON mode, which came with the 1106 models. Reasoning models are the o-series and the
    gpt-5 family, but for its chat models (gpt-5-chat-latest). The least reasoning each
    takes, as a live call wants it: "minimal" for gpt-5 (and its mini and nano), "none" for
    gpt-5.1 and later (their default; gpt-5 does not take it), "low" for the o-series.
    Other names are chat models; a server that says otherwise is heard (`_adapt`).
    """
    name = _SNAPSHOT.sub("", model.strip().lower().rsplit("/", 1)[-1])
    if name in ("gpt-4", "gpt-4-32k"):
        return ModelTraits(reasoning=False, json_mode=False, effort=None)
    if re.fullmatch(r"o\d+(?:-[a-z0-9-]+)?", name):
        return ModelTraits(reasoning=True, json_mode=True, effort="low")
    if "chat" not in name.split("-"):
        if re.fullmatch(r"gpt-5(?:-[a-z0-9-]+)?", name):
            return ModelTraits(reasoning=True, json_mode=True, effort="minimal")
        if re.fullmatch(r"gpt-5\.\d+(?:-[a-z0-9-]+)?", name):
            return ModelTraits(reasoning=True, json_mode=True, effort="none")
    return ModelTraits(reasoning=False, json_mode=True, effort=None)


@dataclass(frozen=True)
class _Learnt:
    """What a server taught about one of its models: the parameters it refused (see
    `_adapt`), and whether the model reasons (its usage counted reasoning tokens)."""

    token_parameter: str = ""  # "" while OPENAI_TOKEN_PARAMETER was taken
    temperature: bool = True
    json_mode: bool = True
    reasoning: bool = False
    effort: bool = True  # False once reasoning_effort itself was refused
    efforts_refused: frozenset[str] = frozenset()
    efforts_supported: tuple[str, ...] = ()  # as the server listed them, if it did

    def reasoning_effort(self, wanted: str) -> str | None:
        """What to send for `wanted`: it, else the nearest value with more reasoning that
        the server takes, else the nearest with less; None when it takes none."""
        if not self.effort:
            return None
        taken = [
            value
            for value in REASONING_EFFORTS
            if value not in self.efforts_refused
            and (not self.efforts_supported or value in self.efforts_supported)
        ]
        rank = REASONING_EFFORTS.index(wanted)
        more = [value for value in taken if REASONING_EFFORTS.index(value) >= rank]
        less = [value for value in taken if REASONING_EFFORTS.index(value) < rank]
        return more[0] if more else (less[-1] if less else None)


_NOTHING_LEARNT = _Learnt()
# By (OPENAI_BASE_URL, model), for the process's life; webhook threads, event loops and
# tasks all read and teach it.
_LEARNT: dict[tuple[str, str], _Learnt] = {}
_LEARNT_LOCK = threading.Lock()


def _learnt(model: str) -> _Learnt:
    return _LEARNT.get((settings.OPENAI_BASE_URL, model), _NOTHING_LEARNT)


def _learn(model: str, **changes: Any) -> bool:
    """Remember `changes` about the configured server's `model`; whether it was news."""
    key = (settings.OPENAI_BASE_URL, model)
    with _LEARNT_LOCK:
        known = _LEARNT.get(key, _NOTHING_LEARNT)
        learnt = dataclasses.replace(known, **changes)
        if learnt == known:
            return False
        _LEARNT[key] = learnt
    return True


def _reasoning_effort(model: str, *, at_least: str = "none") -> str:
    """The reasoning_effort for `model` (if it reasons): OPENAI_REASONING_EFFORT, or by
    its family when that is "auto" ("low", which every family takes, for a model found
    to reason only by its usage); never less than `at_least`."""
    configured = settings.OPENAI_REASONING_EFFORT
    effort = (model_traits(model).effort or "low") if configured == "auto" else configured
    return max(effort, at_least, key=REASONING_EFFORTS.index)


def _model_options(
    model: str, *, output_tokens: int, temperature: float, effort: str, json_object: bool = False
) -> dict[str, Any]:
    """A request's parameters that depend on the model, as its traits and its server's
    refusals say: the token bound (`output_tokens`, and OPENAI_REASONING_MAX_TOKENS more
    for a reasoning model, whose bound counts its reasoning), the temperature, the
    reasoning effort and, when `json_object` is asked, JSON mode."""
    traits = model_traits(model)
    learnt = _learnt(model)
    reasoning = traits.reasoning or learnt.reasoning
    bound = output_tokens + (settings.OPENAI_REASONING_MAX_TOKENS if reasoning else 0)
    options: dict[str, Any] = {learnt.token_parameter or settings.OPENAI_TOKEN_PARAMETER: bound}
    if learnt.temperature and not traits.reasoning:
        options["temperature"] = temperature
    if reasoning and (value := learnt.reasoning_effort(effort)) is not None:
        options["reasoning_effort"] = value
    if json_object and traits.json_mode and learnt.json_mode:
        options["response_format"] = {"type": "json_object"}
    return options


def _turn_request(
    *,
    model: str,
    messages: list[dict[str, Any]],
    output_tokens: int,
    effort: str,
    tools: list[dict[str, Any]] = TOOLS,
) -> dict[str, Any]:
    """The body of a turn's request: chat.completions.create's, streamed with its usage,
    with the call's tools. It is sent and read as plain JSON: the SDK's typed transform of
    the messages and tools, and its model of each streamed chunk, cost CPU on the hot path
    of every turn (docs/decisions/0005-model-requests-as-plain-json.md)."""
    return {
        "model": model,
        **_model_options(
            model, output_tokens=output_tokens, temperature=settings.TEMPERATURE, effort=effort
        ),
        "messages": messages,
        "tools": tools,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _extraction_request(
    *, model: str, messages: list[dict[str, str]], output_tokens: int
) -> dict[str, Any]:
    """The body of an extraction's request: JSON mode where the model has it, no
    temperature to speak of, and at least EXTRACTION_REASONING_EFFORT of reasoning."""
    return {
        "model": model,
        **_model_options(
            model,
            output_tokens=output_tokens,
            temperature=EXTRACTION_TEMPERATURE,
            effort=_reasoning_effort(model, at_least=EXTRACTION_REASONING_EFFORT),
            json_object=True,
        ),
        "messages": messages,
    }


# How a refusal names each parameter that depends on the model, in its `param` or (when it
# has none, as OpenAI-compatible servers often do) its message. The Responses API says
# "reasoning.effort".
_PARAMETERS = {
    "reasoning_effort": re.compile(r"\breasoning[_.]effort\b"),
    "response_format": re.compile(r"\bresponse_format\b"),
    "temperature": re.compile(r"\btemperature\b"),
    "max_completion_tokens": re.compile(r"\bmax_completion_tokens\b"),
    "max_tokens": re.compile(r"\bmax_tokens\b"),
}
# A refusal of what the model or server does not take, rather than of a bad value of ours.
_UNSUPPORTED = re.compile(
    r"unsupported|not supported|unrecognized|unknown|not allowed|not permitted", re.IGNORECASE
)
_SUPPORTED_VALUES = re.compile(r"supported values are:?(.*)", re.IGNORECASE | re.DOTALL)


def _adapt(exc: openai.APIError, *, model: str, sent: dict[str, Any]) -> bool:
    """Learn from a 400 refusing one model-dependent parameter of the request `sent` as
    unsupported; whether it taught something (so that the request, built again, differs).

    A refused temperature or JSON mode is left out from then on; a refused token bound
    takes its other name; a refused reasoning_effort value gives way to one the server
    listed (or, unlisted, the next one), and a refused reasoning_effort to none at all.
    """
    if not isinstance(exc, openai.BadRequestError):
        return False
    message = _provider_message(exc, api_key=settings.OPENAI_API_KEY)
    if exc.code not in ("unsupported_parameter", "unsupported_value") and not (
        _UNSUPPORTED.search(message)
    ):
        return False
    parameter = _refused_parameter(exc.param, message)
    if parameter is None or parameter not in sent:
        return False
    changes: dict[str, Any]
    if parameter == "temperature":
        changes = {"temperature": False}
    elif parameter == "response_format":
        changes = {"json_mode": False}
    elif parameter in TOKEN_PARAMETERS:
        changes = {"token_parameter": next(name for name in TOKEN_PARAMETERS if name != parameter)}
    else:
        value = sent[parameter]
        refused = _learnt(model).efforts_refused | {value}
        listed = _SUPPORTED_VALUES.search(message)
        supported = tuple(
            word
            for word in re.findall(r"'(\w+)'", listed.group(1) if listed else "")
            if word in REASONING_EFFORTS
        )
        if supported:
            changes = {"efforts_supported": supported, "efforts_refused": refused}
        elif exc.code == "unsupported_value" or f"'{value}'" in message:
            changes = {"efforts_refused": refused}
        else:
            changes = {"effort": False}
    if not _learn(model, **changes):
        return False
    logger.warning(
        "%s refused %s for model %s (%s); it is adapted for as long as this process runs.",
        settings.OPENAI_BASE_URL,
        parameter,
        model,
        message,
    )
    return True


def _refused_parameter(param: str | None, message: str) -> str | None:
    """The model-dependent parameter a refusal names: by its `param`, or the first one its
    message names when it has no `param`."""
    if param:
        return next(
            (name for name, pattern in _PARAMETERS.items() if pattern.match(param.lower())), None
        )
    named = [
        (found.start(), name)
        for name, pattern in _PARAMETERS.items()
        if (found := pattern.search(message))
    ]
    return min(named)[1] if named else None


async def _post_adapting(
    client: openai.AsyncOpenAI, *, model: str, build: Callable[[], dict[str, Any]]
) -> openai.AsyncStream[object]:
    """POST the streamed chat request `build` makes; once more, built again, when a 400
    taught `_adapt` something."""

    async def post(body: dict[str, Any]) -> openai.AsyncStream[object]:
        return await client.post(
            "/chat/completions",
            body=body,
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )

    body = build()
    try:
        return await post(body)
    except openai.BadRequestError as exc:
        retry = build() if _adapt(exc, model=model, sent=body) else body
        if retry == body:
            raise
    try:
        return await post(retry)
    except openai.BadRequestError as exc:
        _adapt(exc, model=model, sent=retry)  # for the next request; this one is refused
        raise


def _create_adapting(
    client: openai.OpenAI, *, model: str, build: Callable[[], dict[str, Any]]
) -> Any:
    """`chat.completions.create` with what `build` makes; once more, built again, when a
    400 taught `_adapt` something."""
    body = build()
    try:
        return client.chat.completions.create(**body)
    except openai.BadRequestError as exc:
        retry = build() if _adapt(exc, model=model, sent=body) else body
        if retry == body:
            raise
    try:
        return client.chat.completions.create(**retry)
    except openai.BadRequestError as exc:
        _adapt(exc, model=model, sent=retry)  # for the next request; this one is refused
        raise


def _count_usage(usage: Any) -> tuple[int | None, int | None]:
    """Count the tokens of ``usage``: the SDK's model, or a streamed chunk's plain JSON."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    else:
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None, None
    for kind, tokens in (("prompt", prompt), ("completion", completion)):
        if tokens:
            MODEL_TOKENS.labels(kind=kind).inc(tokens)
    return prompt, completion


def _reasoning_tokens(usage: Any) -> int | None:
    """The reasoning tokens among ``usage``'s completion tokens, when it says."""
    if isinstance(usage, dict):
        details = usage.get("completion_tokens_details")
    else:
        details = getattr(usage, "completion_tokens_details", None)
    if isinstance(details, dict):
        tokens = details.get("reasoning_tokens")
    else:
        tokens = getattr(details, "reasoning_tokens", None)
    return tokens if isinstance(tokens, int) else None


@dataclass
class _Tally:
    """The tokens of a turn's or an extraction's requests (None until one reports)."""

    prompt: int | None = None
    completion: int | None = None

    def add(self, usage: Any, *, model: str) -> int | None:
        """Count ``usage``; its reasoning tokens. A model not known to reason that
        reports reasoning tokens gets a reasoning model's bound and effort from then on."""
        prompt, completion = _count_usage(usage)
        if prompt is not None and completion is not None:
            self.prompt = (self.prompt or 0) + prompt
            self.completion = (self.completion or 0) + completion
        reasoning = _reasoning_tokens(usage)
        if reasoning and not model_traits(model).reasoning and _learn(model, reasoning=True):
            logger.warning(
                "Model %s reasons (%d reasoning tokens): it is given a reasoning budget.",
                model,
                reasoning,
            )
        return reasoning
