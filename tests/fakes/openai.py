"""A fake OpenAI chat-completions API on 127.0.0.1, for driving the real SDK over HTTP.

It serves POST /v1/chat/completions as OpenAI does: streamed as server-sent events in
small chunks (text, then tool calls in fragments, then usage when asked) or as one JSON
answer. It checks the API key and the request's shape, records every request, and plays
scripted replies (with delays before the first chunk and between chunks) and faults
(error statuses, dropped connections, hangs). With nothing queued it answers in Spanish.

Each model family takes the parameters OpenAI documents for it, and refuses the others
with OpenAI's 400 (see `_refusal`): the original gpt-4 has no JSON mode; reasoning models
(o-series, gpt-5) take no `max_tokens` nor a temperature other than 1, spend reasoning
tokens out of `max_completion_tokens`, and take only their own `reasoning_effort` values.
A token here is 4 characters of text, OpenAI's rule of thumb ("What are tokens and how to
count them", help.openai.com), and replies are cut at the request's token bound as OpenAI
cuts them. `aliases` plays deployment names (a name OpenAI's families cannot be told
from); `only_max_tokens` plays an OpenAI-compatible server that predates
`max_completion_tokens`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qs

from tests.fakes import server
from tests.fakes.server import (
    FakeRequestHandler,
    LocalFakeServer,
    Response,
    json_response,
)

DEFAULT_REPLY = "De acuerdo, lo anoto. ¿Hay algo más en lo que pueda ayudarle?"
DEFAULT_OUTCOME = '{"outcome": {}, "summary": "La llamada terminó sin incidencias."}'
CHAT_PATH = "/v1/chat/completions"
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
CHARS_PER_TOKEN = 4
# The reasoning_effort values each reasoning family takes, and its default. The API
# reference (platform.openai.com/docs/api-reference/chat/create#reasoning_effort): models
# before gpt-5.1 default to medium and do not support none; gpt-5.1 defaults to none and
# takes none, low, medium and high; "minimal" came with gpt-5; o-series models take low,
# medium and high (platform.openai.com/docs/guides/reasoning).
EFFORTS = {
    "o-series": (("low", "medium", "high"), "medium"),
    "gpt-5": (("minimal", "low", "medium", "high"), "medium"),
    "gpt-5.1": (("none", "low", "medium", "high"), "none"),
}
ALL_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# Reasoning tokens the fake's reasoning models spend on a reply, by effort (a reply may
# say otherwise): enough to leave a small budget without visible text.
REASONING_TOKENS = {
    "none": 0,
    "minimal": 16,
    "low": 160,
    "medium": 480,
    "high": 1200,
    "xhigh": 2400,
}
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True)
class ToolCall:
    """A tool call to stream; a str `arguments` is sent as it is (say, broken JSON)."""

    name: str
    arguments: Any = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class ScriptedReply:
    """One queued answer of the model."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    first_delay: float = 0.0  # seconds between the headers and the first chunk
    chunk_delay: float = 0.0  # seconds between chunks
    chunk_size: int = 8  # characters of text or arguments per chunk
    usage: tuple[int, int] | None = None  # (prompt, completion); counted when None
    drop_after: int | None = None  # chunks sent before the connection is cut
    finish_reason: str | None = None  # "stop" or "tool_calls" when None
    raw_events: tuple[str, ...] | None = None  # `data:` payloads sent as they are, if set
    reasoning_tokens: int | None = None  # a reasoning model's; by its effort when None


@dataclass(frozen=True)
class RecordedRequest(server.RecordedRequest):
    json: Any


@dataclass(frozen=True)
class Refusal:
    """A 400 as OpenAI words it: the `error` object's message, param and code."""

    message: str
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class _Stream:
    events: list[str]  # the `data:` payloads, [DONE] included
    first_delay: float
    chunk_delay: float
    drop_after: int | None


@dataclass(frozen=True)
class _Output:
    """What the model wrote within the request's token bound."""

    text: str
    tool_calls: tuple[ToolCall, ...]  # arguments as the text sent (perhaps cut short)
    reasoning_tokens: int
    completion_tokens: int
    finish_reason: str


class _Handler(FakeRequestHandler):
    """The shared handler, plus answers streamed as server-sent events."""

    def _send(self, response: Response | _Stream) -> None:  # type: ignore[override]
        if isinstance(response, _Stream):
            self._stream(self.server.fake, response)  # type: ignore[attr-defined]
        else:
            super()._send(response)

    def _stream(self, fake: FakeOpenAI, stream: _Stream) -> None:
        # Chunked, as OpenAI streams: a cut connection is then an incomplete body to the
        # client, not a normal end; a whole stream leaves the connection open for the next.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for index, event in enumerate(stream.events):
            fake._wait(stream.first_delay if index == 0 else stream.chunk_delay)
            if fake._stopping.is_set() or (
                stream.drop_after is not None and index >= stream.drop_after
            ):
                self.close_connection = True
                return
            data = f"data: {event}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeOpenAI(LocalFakeServer[RecordedRequest]):
    """A fake OpenAI server; use as a context manager or with start() and stop().

    `aliases` maps model names the fake is asked for to the OpenAI model that answers
    (as a deployment name does); `only_max_tokens` refuses `max_completion_tokens` as an
    unrecognized argument, as an OpenAI-compatible server that predates it does.
    `default_reply` and `default_outcome` answer a turn and an extraction when nothing
    is queued.
    """

    thread_name = "fake-openai"
    handler_class = _Handler

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        aliases: dict[str, str] | None = None,
        only_max_tokens: bool = False,
        default_reply: str = DEFAULT_REPLY,
        default_outcome: str = DEFAULT_OUTCOME,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.default_reply = default_reply
        self.default_outcome = default_outcome
        # The 400s it answered, as OpenAI words them: what a client had to adapt to.
        self.refusals: list[str] = []
        self.aliases: dict[str, str] = dict(aliases or {})
        self.only_max_tokens = only_max_tokens
        self._replies: deque[ScriptedReply] = deque()

    # --- Scripting ------------------------------------------------------------------------
    def queue_reply(self, text: str = "", **options: Any) -> ScriptedReply:
        """Answer the next chat request (not failed by a fault) with this reply.

        Options are ScriptedReply's fields; `tool_calls` may be ToolCall or
        (name, arguments) pairs.
        """
        calls = tuple(
            call if isinstance(call, ToolCall) else ToolCall(*call)
            for call in options.pop("tool_calls", ())
        )
        reply = ScriptedReply(text=text, tool_calls=calls, **options)
        with self._lock:
            self._replies.append(reply)
        return reply

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        message: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` and an OpenAI error body."""
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        if status == 429:
            error_type, code = "requests", code or "rate_limit_exceeded"
        body = _error_body(
            message or f"Scripted failure with status {status}.",
            type=error_type,
            code=code,
            param=param,
        )
        self._queue(times, status=status, body=body, headers=headers)

    def drop_next(self, *, times: int = 1) -> None:
        """Close the connection of the next `times` requests without answering."""
        self._queue(times, drop=True)

    def hang_next(self, seconds: float, *, times: int = 1) -> None:
        """Send nothing, not even headers, for `seconds` (then answer normally)."""
        self.delay_next(seconds, times=times)

    # --- Inspection -----------------------------------------------------------------------
    @property
    def chat_requests(self) -> list[Any]:
        """The JSON bodies of the chat-completion requests, in order."""
        return [r.json for r in self.requests if r.path == CHAT_PATH]

    # --- Serving (called from handler threads) --------------------------------------------
    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        return RecordedRequest(
            method=method, path=url.path, query=parse_qs(url.query), headers=headers, json=parsed
        )

    def _check_request(self, request: RecordedRequest) -> list[str]:
        if request.method != "POST" or request.path != CHAT_PATH:
            return []
        return list(_problems(request.json))

    def _answer(  # type: ignore[override]
        self, request: RecordedRequest, problems: list[str]
    ) -> Response | _Stream:
        """A JSON answer, or a stream the handler sends as server-sent events."""
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            masked = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            return json_response(
                401,
                _error_body(
                    f"Incorrect API key provided: {masked}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    type="invalid_request_error",
                    code="invalid_api_key",
                ),
            )
        if request.method != "POST" or request.path != CHAT_PATH:
            return json_response(
                404,
                _error_body(f"Unknown request URL: {request.method} {request.path}.", type=None),
            )
        if problems:
            with self._lock:
                self.refusals.append(" ".join(problems))
            return json_response(400, _error_body(" ".join(problems), type="invalid_request_error"))
        body = request.json
        model = self.aliases.get(body["model"], body["model"])
        refusal = _refusal(body, model=model, only_max_tokens=self.only_max_tokens)
        if refusal is not None:
            with self._lock:
                self.refusals.append(refusal.message)
            return json_response(
                400,
                _error_body(
                    refusal.message,
                    type="invalid_request_error",
                    param=refusal.param,
                    code=refusal.code,
                ),
            )
        with self._lock:
            reply = self._replies.popleft() if self._replies else None
        if reply is None:
            reply = ScriptedReply(
                text=self.default_outcome if _asks_for_json(body) else self.default_reply
            )
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _Stream(
                events=list(
                    reply.raw_events
                    if reply.raw_events is not None
                    else _chunks(body, reply, model=model, include_usage=include_usage)
                ),
                first_delay=reply.first_delay,
                chunk_delay=reply.chunk_delay,
                drop_after=reply.drop_after,
            )
        self._wait(reply.first_delay)
        return json_response(200, _completion(body, reply, model=model))


# --- Model families -------------------------------------------------------------------------


def family(model: str) -> str:
    """The OpenAI family of `model` (a dated snapshot is its model's): "gpt-4" (the
    original, before JSON mode), "o-series", "gpt-5", "gpt-5.1" (and later) or "chat"."""
    name = _SNAPSHOT.sub("", model.lower())
    if name in ("gpt-4", "gpt-4-32k"):
        return "gpt-4"
    if re.fullmatch(r"o\d+(-[a-z0-9-]+)?", name):
        return "o-series"
    if "chat" not in name.split("-"):  # gpt-5-chat-latest is a chat model
        if re.fullmatch(r"gpt-5(-[a-z0-9-]+)?", name):
            return "gpt-5"
        if re.fullmatch(r"gpt-5\.\d+(-[a-z0-9-]+)?", name):
            return "gpt-5.1"
    return "chat"


def _refusal(body: dict[str, Any], *, model: str, only_max_tokens: bool) -> Refusal | None:
    """What OpenAI refuses with a 400 naming a parameter, for `model`'s family."""
    kind = family(model)
    if "max_tokens" in body and "max_completion_tokens" in body:
        # The API reference: max_tokens "is now deprecated in favor of
        # max_completion_tokens"; the two are one bound and are not taken together
        # (OpenAI's wording paraphrased).
        return Refusal(
            "Invalid request: 'max_tokens' and 'max_completion_tokens' cannot both be set. "
            "Use 'max_completion_tokens'.",
            param="max_tokens",
        )
    if only_max_tokens and "max_completion_tokens" in body:
        # What OpenAI itself answered to an argument it did not know, and what
        # OpenAI-compatible servers that predate max_completion_tokens still answer.
        return Refusal("Unrecognized request argument supplied: max_completion_tokens")
    if (problem := _tool_messages_refusal(body.get("messages") or [])) is not None:
        return problem
    if kind in EFFORTS:
        # The reasoning guide (platform.openai.com/docs/guides/reasoning) and the API
        # reference: reasoning models take max_completion_tokens, not max_tokens ("not
        # compatible with o-series models"), and only the default temperature.
        if "max_tokens" in body:
            return Refusal(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
        if "temperature" in body and body["temperature"] != 1:
            return Refusal(
                f"Unsupported value: 'temperature' does not support {body['temperature']} "
                "with this model. Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        supported, _default = EFFORTS[kind]
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in supported:
            listed = ", ".join(f"'{value}'" for value in supported[:-1])
            return Refusal(
                f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this "
                f"model. Supported values are: {listed}, and '{supported[-1]}'.",
                param="reasoning_effort",
                code="unsupported_value",
            )
    elif "reasoning_effort" in body:
        # The API reference: reasoning_effort is for reasoning models only.
        return Refusal(
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    if kind == "gpt-4" and (body.get("response_format") or {}).get("type") == "json_object":
        # The JSON mode guide (platform.openai.com/docs/guides/structured-outputs, "JSON
        # mode"): JSON mode came with gpt-3.5-turbo-1106 and gpt-4-1106-preview; the
        # original gpt-4 (0314, 0613, 32k) refuses it.
        return Refusal(
            "Invalid parameter: 'response_format' of type 'json_object' is not supported "
            "with this model.",
            param="response_format",
        )
    return None


def _tool_messages_refusal(messages: list[Any]) -> Refusal | None:
    """A `tool` message answers a `tool_calls` id of the assistant message just before
    it, and every such id gets its answer (the function calling guide,
    platform.openai.com/docs/guides/function-calling; OpenAI's wording)."""
    answerable: set[str] = set()
    pending: set[str] = set()
    asked_at = 0
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            answered = message.get("tool_call_id")
            if answered not in answerable:
                return Refusal(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            pending.discard(answered)
            continue
        if pending:
            break
        answerable = set()
        if role == "assistant" and message.get("tool_calls"):
            answerable = {
                call.get("id") for call in message["tool_calls"] if isinstance(call, dict)
            }
            pending, asked_at = set(answerable), index
    if pending:
        return Refusal(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(sorted(pending))}",
            param=f"messages.[{asked_at}].role",
        )
    return None


def _problems(body: Any) -> Iterator[str]:
    """What OpenAI would refuse with a 400 in a chat-completion request."""
    if not isinstance(body, dict):
        yield "The body must be a JSON object."
        return
    if not isinstance(body.get("model"), str) or not body["model"]:
        yield "you must provide a model parameter."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        yield "'messages' must be a non-empty array."
        messages = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            yield f"Invalid value for 'messages[{index}].role'."
        elif not isinstance(message.get("content"), str) and not message.get("tool_calls"):
            yield f"Invalid type for 'messages[{index}].content': expected a string."
        elif message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            yield f"Missing required parameter: 'messages[{index}].tool_call_id'."
    if "stream_options" in body and not body.get("stream"):
        yield "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        yield "Invalid 'temperature': expected a number between 0 and 2."
    for name in ("max_tokens", "max_completion_tokens"):
        bound = body.get(name, 1)
        if not isinstance(bound, int) or bound < 1:
            yield f"Invalid '{name}': expected an integer of at least 1."
    if body.get("reasoning_effort", "low") not in ALL_EFFORTS:
        yield "Invalid value for 'reasoning_effort'."
    for index, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            yield f"Invalid value for 'tools[{index}]'."
        elif not function.get("name") or not isinstance(function.get("parameters", {}), dict):
            yield f"Invalid 'tools[{index}].function'."
    if (body.get("response_format") or {}).get("type") == "json_object" and not any(
        "json" in str(m.get("content", "")).lower() for m in messages if isinstance(m, dict)
    ):
        yield (
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'."
        )


def _asks_for_json(body: dict[str, Any]) -> bool:
    """JSON mode, or (for a model without it) a request without tools whose instructions
    ask for JSON: what an extraction looks like."""
    if (body.get("response_format") or {}).get("type") == "json_object":
        return True
    first = body["messages"][0] if body["messages"] else {}
    return not body.get("tools") and "json" in str(first.get("content") or "").lower()


# --- Answers --------------------------------------------------------------------------------


def _output(body: dict[str, Any], reply: ScriptedReply, *, model: str) -> _Output:
    """The reply as the model writes it within the request's token bound.

    The reasoning guide: reasoning tokens are counted out of max_completion_tokens, and
    a bound reached first, even before any visible output, ends the reply with
    finish_reason "length". A reasoning model thinks first, then writes its text, then
    its tool calls; every model is cut where its bound runs out.
    """
    kind = family(model)
    reasoning = 0
    if kind in EFFORTS:
        _supported, default = EFFORTS[kind]
        reasoning = (
            reply.reasoning_tokens
            if reply.reasoning_tokens is not None
            else REASONING_TOKENS[body.get("reasoning_effort") or default]
        )
    bound = body.get("max_completion_tokens", body.get("max_tokens"))
    left = math.inf if bound is None else bound
    if reasoning >= left:
        return _Output("", (), int(left), int(left), "length")
    left -= reasoning
    text, calls, cut = reply.text, [], False
    if _tokens(text) > left:
        text, cut = text[: int(left) * CHARS_PER_TOKEN], True
    left -= _tokens(text)
    for index, call in enumerate(() if cut else reply.tool_calls):
        arguments = _arguments(call)
        if _tokens(arguments) > left:
            arguments, cut = arguments[: int(left) * CHARS_PER_TOKEN], True
        left -= _tokens(arguments)
        calls.append(ToolCall(call.name, arguments, call.id or f"call_fake{index}"))
        if cut:
            break
    written = _tokens(text) + sum(_tokens(call.arguments) for call in calls)
    if cut:
        finish_reason = "length"
    else:
        finish_reason = reply.finish_reason or ("tool_calls" if calls else "stop")
    return _Output(text, tuple(calls), reasoning, reasoning + written, finish_reason)


def _chunks(
    body: dict[str, Any], reply: ScriptedReply, *, model: str, include_usage: bool
) -> Iterator[str]:
    """The `data:` payloads of a streamed reply, as OpenAI sends them."""
    created = int(time.time())
    output = _output(body, reply, model=model)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            payload["usage"] = None
        return json.dumps(payload, ensure_ascii=False)

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in _pieces(output.text, reply.chunk_size):
        yield chunk({"content": piece})
    for index, call in enumerate(output.tool_calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for piece in _pieces(call.arguments, reply.chunk_size):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, finish_reason=output.finish_reason)
    if include_usage:
        yield json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _usage(body, reply, output),
            }
        )
    yield "[DONE]"


def _completion(body: dict[str, Any], reply: ScriptedReply, *, model: str) -> dict[str, Any]:
    output = _output(body, reply, model=model)
    message: dict[str, Any] = {"role": "assistant", "content": output.text or None, "refusal": None}
    if output.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in output.tool_calls
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": output.finish_reason,
            }
        ],
        "usage": _usage(body, reply, output),
    }


def _usage(body: dict[str, Any], reply: ScriptedReply, output: _Output) -> dict[str, Any]:
    """Usage as OpenAI reports it, reasoning tokens among the completion's (the API
    reference's `usage.completion_tokens_details.reasoning_tokens`)."""
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:  # a word a token: enough for tests to see counts move
        prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        completion = output.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": output.reasoning_tokens},
    }


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _arguments(call: ToolCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def _pieces(text: str, size: int) -> Iterator[str]:
    size = max(1, size)
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _error_body(
    message: str, *, type: str | None, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
