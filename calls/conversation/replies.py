"""A live call's reply: the model's next line streamed, each sentence handed on as soon as
it is complete (`stream_reply`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from callcenter.metrics import MODEL_ERRORS, MODEL_SECONDS
from calls.agent import TERMINAL_TOOLS, _call_tools, contact_message
from calls.conversation.base import (
    CHARS_PER_TOKEN,
    MIN_TOTAL_TIMEOUT,
    TOTAL_TIMEOUT_FACTOR,
    Action,
    ConversationNotConfigured,
    ConversationUnavailable,
    Reply,
    SentenceCallback,
    is_configured,
)
from calls.conversation.client import _async_client, _failure, _ms_since, _since, _unreadable
from calls.conversation.models import _post_adapting, _reasoning_effort, _Tally, _turn_request
from calls.conversation.tool_calls import _check_call, _tool_results, _ToolCallParts
from calls.sentences import SentenceSplitter

logger = logging.getLogger(__name__)


async def stream_reply(
    *,
    system: str,
    history: list[dict[str, str]],
    contact: Mapping[str, str] | None = None,
    answer_schema: Mapping[str, Any] | None = None,
    on_sentence: SentenceCallback | None = None,
    on_text: SentenceCallback | None = None,
    timeout: float | None = None,
) -> Reply:
    """The model's next line after `history` ([{"role": "assistant"|"user", "content"}]).

    `contact` (the values the instructions refer to) goes in a message of its own after
    `system`, as untrusted data (`contact_message`). The tools' arguments are checked
    against the call's own context: record_answer takes only the fields of
    `answer_schema` (an object's JSON Schema; none: not offered), each value valid
    against its field's schema; anything else is refused, and the model told why.

    Each complete sentence is awaited through `on_sentence` while the model still writes
    (so it should hand the sentence on quickly; its time counts against the deadline).
    `on_text`, when given, is awaited with each piece of text as it arrives instead (a
    transport that speaks text as it comes: ConversationRelay), within the same bound.
    The spoken text ends at the last whole sentence within MAX_TOKENS (at 4 characters a
    token); tool arguments are bounded apart (OPENAI_TOOL_MAX_TOKENS). A reply of tool
    calls alone, none of them terminal, is answered with the tools' results and the
    model's continuation is spoken the same way (once a turn). `timeout` (MODEL_TIMEOUT by
    default) bounds the wait for each request's first chunk; the whole turn gets
    max(3 * timeout, 10) seconds. Raises ConversationUnavailable or ConversationRejected
    (also when not configured; then no request is made).
    """
    if not is_configured():
        MODEL_ERRORS.labels(reason="rejected").inc()
        raise ConversationNotConfigured
    first_timeout = float(settings.MODEL_TIMEOUT if timeout is None else timeout)
    total_timeout = max(first_timeout * TOTAL_TIMEOUT_FACTOR, MIN_TOTAL_TIMEOUT)
    model = settings.DEFAULT_MODEL
    effort = _reasoning_effort(model)
    tools = _call_tools(answer_schema)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        *([{"role": "system", "content": contact_message(contact)}] if contact else []),
        *({"role": turn["role"], "content": turn["content"]} for turn in history),
    ]
    started = time.perf_counter()
    turn_end = asyncio.get_running_loop().time() + total_timeout
    voice = _Voice(
        limit=settings.MAX_TOKENS * CHARS_PER_TOKEN,
        on_sentence=on_sentence,
        on_text=on_text,
        started=started,
    )
    tally = _Tally()
    actions: list[Action] = []

    def build() -> dict[str, Any]:
        # The bound covers the spoken text and the tool arguments (and a reasoning
        # model's reasoning): the text is cut here.
        return _turn_request(
            model=model,
            messages=messages,
            output_tokens=settings.MAX_TOKENS + settings.OPENAI_TOOL_MAX_TOKENS,
            effort=effort,
            tools=tools.tools,
        )

    api_key = settings.OPENAI_API_KEY
    try:
        client = _async_client(api_key=api_key, base_url=settings.OPENAI_BASE_URL).with_options(
            timeout=total_timeout
        )
        for continuation in (False, True):
            answer = await _stream_round(
                client,
                model=model,
                build=build,
                voice=voice,
                tally=tally,
                first_timeout=first_timeout,
                total_timeout=total_timeout,
                turn_end=turn_end,
            )
            _warn_if_cut(answer, model=model)
            checked = [_check_call(parts, tools) for parts in answer.calls]
            actions += [action for action, _problem in checked if action is not None]
            if continuation or not _continues(answer, checked):
                break
            # Tools alone, and nothing said: the model goes on once it has their results.
            messages = [*messages, *_tool_results(answer.calls, checked)]
    except openai.APIError as exc:
        raise _failure(exc, api_key=api_key) from exc
    finally:
        MODEL_SECONDS.labels(kind="reply").observe(_since(started))

    if voice.cut:
        logger.info(
            "The model's reply ran past MAX_TOKENS (%s): %d sentence(s) of it are spoken.",
            settings.MAX_TOKENS,
            len(voice.spoken),
        )
    return Reply(
        text=voice.text,
        actions=tuple(actions),
        model_ms=_ms_since(started),
        first_sentence_ms=voice.first_sentence_ms,
        prompt_tokens=tally.prompt,
        completion_tokens=tally.completion,
        model=model,
    )


# --- Streaming ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Round:
    """One streamed answer of a turn: its text, its tool calls (ids filled in), why it
    ended and the reasoning tokens its usage counted."""

    text: str
    calls: list[_ToolCallParts]
    finish_reason: str | None
    reasoning_tokens: int | None


async def _stream_round(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    build: Callable[[], dict[str, Any]],
    voice: _Voice,
    tally: _Tally,
    first_timeout: float,
    total_timeout: float,
    turn_end: float,
) -> _Round:
    """Stream one answer, its text through `voice`, its usage into `tally`. Its first
    chunk must come within `first_timeout` s, and the answer end by `turn_end` (the
    loop's time)."""
    loop = asyncio.get_running_loop()
    content: list[str] = []
    calls: dict[int, _ToolCallParts] = {}
    usage: Any = None
    finish_reason: str | None = None
    stream = None
    first = True
    chunk: Any  # plain JSON of any shape, read below as a chunk or refused
    try:
        async with asyncio.timeout_at(min(loop.time() + first_timeout, turn_end)) as deadline:
            stream = await _post_adapting(client, model=model, build=build)
            async for chunk in stream:
                if first:
                    first = False
                    deadline.reschedule(turn_end)
                try:
                    usage = chunk.get("usage") or usage
                    choices = chunk.get("choices") or ()
                    for choice in choices:
                        finish_reason = choice.get("finish_reason") or finish_reason
                        delta = choice.get("delta") or {}
                        for piece in delta.get("tool_calls") or ():
                            parts = calls.setdefault(piece.get("index", 0), _ToolCallParts())
                            parts.add(piece)
                        if text := delta.get("content"):
                            content.append(text)
                            await voice.feed(text)
                except (AttributeError, TypeError) as exc:  # not a chunk's shape
                    raise _unreadable(chunk) from exc
            await voice.flush()
    except ValueError as exc:  # a chunk that is not JSON
        raise _unreadable(str(exc)) from exc
    except TimeoutError as exc:
        if not deadline.expired():
            raise  # not ours: on_sentence's own
        waited = first_timeout if first else total_timeout
        MODEL_ERRORS.labels(reason="timeout").inc()
        raise ConversationUnavailable(
            f"OpenAI did not answer within {waited:g} s",
            reason=str(
                _("The AI model did not answer within %(seconds)s seconds.")
                % {"seconds": f"{waited:g}"}
            ),
            timed_out=True,
        ) from exc
    finally:
        if stream is not None:
            await stream.close()
    ordered = [calls[index] for index in sorted(calls)]
    for number, parts in enumerate(ordered):
        parts.id = parts.id or f"call_{number}"  # a server that sent none
    return _Round(
        text="".join(content),
        calls=ordered,
        finish_reason=finish_reason,
        reasoning_tokens=tally.add(usage, model=model),
    )


def _warn_if_cut(answer: _Round, *, model: str) -> None:
    if answer.finish_reason != "length":
        return
    if not answer.text.strip() and not answer.calls:
        logger.warning(
            "Model %s spent its whole token bound (%s reasoning tokens) before writing "
            "anything: raise OPENAI_REASONING_MAX_TOKENS or lower OPENAI_REASONING_EFFORT.",
            model,
            answer.reasoning_tokens,
        )
    else:
        logger.warning(
            "Model %s's answer was cut at its token bound (MAX_TOKENS %s + "
            "OPENAI_TOOL_MAX_TOKENS %s, %s reasoning tokens).",
            model,
            settings.MAX_TOKENS,
            settings.OPENAI_TOOL_MAX_TOKENS,
            answer.reasoning_tokens,
        )


class _Voice:
    """Hands a reply's sentences to `on_sentence` as they complete, while the text said
    fits in `limit` characters: the spoken reply ends at the last whole sentence within
    it (a first sentence longer than that is cut at a word, with an ellipsis)."""

    def __init__(
        self,
        *,
        limit: int,
        on_sentence: SentenceCallback | None,
        started: float,
        on_text: SentenceCallback | None = None,
    ):
        self.limit = limit
        self.on_sentence = on_sentence
        self.on_text = on_text
        self.forwarded = 0  # characters handed to on_text
        self.started = started
        self.spoken: list[str] = []
        self.cut = False  # the text ran past `limit`: the rest is not said
        self.first_sentence_ms: int | None = None
        self._splitter = SentenceSplitter()
        self._written: list[str] = []

    @property
    def text(self) -> str:
        """What was said: the text as written, or what was said of it when it was cut (its
        sentences, or the pieces handed to on_text)."""
        if not self.cut:
            return "".join(self._written).strip()
        return ("" if self.on_text is not None else " ").join(self.spoken).strip()

    async def feed(self, text: str) -> None:
        self._written.append(text)
        if self.on_text is not None:
            await self._forward(text)
            return
        await self._say(self._splitter.feed(text))

    async def _forward(self, text: str) -> None:
        """Hand `text` on as it came, up to `limit` characters in all (cut at a word)."""
        assert self.on_text is not None
        if self.cut:
            return
        if self.forwarded + len(text) > self.limit:
            self.cut = True
            text = text[: self.limit - self.forwarded]
            text = text[: text.rfind(" ") + 1] if " " in text else ""
            if not text:
                return
        if self.first_sentence_ms is None:
            self.first_sentence_ms = _ms_since(self.started)
        self.forwarded += len(text)
        self.spoken.append(text)
        await self.on_text(text)

    async def flush(self) -> None:
        if self.on_text is None:
            await self._say(self._splitter.flush())

    async def _say(self, sentences: list[str]) -> None:
        for sentence in sentences:
            if self.cut:
                return
            if sum(len(said) + 1 for said in self.spoken) + len(sentence) > self.limit:
                self.cut = True
                if self.spoken:
                    return
                sentence = _shortened(sentence, self.limit)
            self.spoken.append(sentence)
            if self.first_sentence_ms is None:
                self.first_sentence_ms = _ms_since(self.started)
            if self.on_sentence is not None:
                await self.on_sentence(sentence)


def _shortened(sentence: str, limit: int) -> str:
    """`sentence` cut at the last word that fits in `limit` characters with an ellipsis."""
    kept = sentence[: max(limit - 1, 1)]
    if not sentence[len(kept)].isspace() and " " in kept:  # the cut is inside a word
        kept = kept[: kept.rfind(" ")]
    return kept.rstrip(" ,;:") + "…"


def _continues(answer: _Round, checked: list[tuple[Action | None, str]]) -> bool:
    """Whether `answer` is tool calls alone, none a terminal one the flow speaks for: the
    model says something once it has their results."""
    return (
        not answer.text.strip()
        and bool(checked)
        and not any(action and action.name in TERMINAL_TOOLS for action, _problem in checked)
    )
