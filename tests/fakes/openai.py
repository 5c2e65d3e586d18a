"""A fake OpenAI chat-completions API on 127.0.0.1, for driving the real SDK over HTTP.

It serves POST /v1/chat/completions as OpenAI does: streamed as server-sent events in
small chunks (text, then tool calls in fragments, then usage when asked) or as one JSON
answer. It checks the API key and the request's shape, records every request, and plays
scripted replies (with delays before the first chunk and between chunks) and faults
(error statuses, dropped connections, hangs). With nothing queued it answers in Spanish.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class RecordedRequest(server.RecordedRequest):
    json: Any


@dataclass(frozen=True)
class _Stream:
    events: list[str]  # the `data:` payloads, [DONE] included
    first_delay: float
    chunk_delay: float
    drop_after: int | None


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
    """A fake OpenAI server; use as a context manager or with start() and stop()."""

    thread_name = "fake-openai"
    handler_class = _Handler

    def __init__(self, *, api_key: str = "test-key") -> None:
        super().__init__()
        self.api_key = api_key
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
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` and an OpenAI error body."""
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        if status == 429:
            error_type, code = "requests", code or "rate_limit_exceeded"
        body = _error_body(
            message or f"Scripted failure with status {status}.", type=error_type, code=code
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
            return json_response(400, _error_body(" ".join(problems), type="invalid_request_error"))
        body = request.json
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        with self._lock:
            reply = self._replies.popleft() if self._replies else None
        if reply is None:
            reply = ScriptedReply(text=DEFAULT_OUTCOME if json_mode else DEFAULT_REPLY)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _Stream(
                events=list(
                    reply.raw_events
                    if reply.raw_events is not None
                    else _chunks(body, reply, include_usage=include_usage)
                ),
                first_delay=reply.first_delay,
                chunk_delay=reply.chunk_delay,
                drop_after=reply.drop_after,
            )
        self._wait(reply.first_delay)
        return json_response(200, _completion(body, reply))


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
    if "stream_options" in body and not body.get("stream"):
        yield "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        yield "Invalid 'temperature': expected a number between 0 and 2."
    max_tokens = body.get("max_tokens", 1)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        yield "Invalid 'max_tokens': expected an integer of at least 1."
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


def _chunks(body: dict[str, Any], reply: ScriptedReply, *, include_usage: bool) -> Iterator[str]:
    """The `data:` payloads of a streamed reply, as OpenAI sends them."""
    created = int(time.time())
    sent = 0

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
    for piece in _pieces(reply.text, reply.chunk_size):
        sent += 1
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        sent += 1
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id or f"call_fake{index}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for piece in _pieces(_arguments(call), reply.chunk_size):
            sent += 1
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, finish_reason=_finish_reason(reply))
    if include_usage:
        yield json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _usage(body, reply, completion=sent),
            }
        )
    yield "[DONE]"


def _completion(body: dict[str, Any], reply: ScriptedReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_fake{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call)},
            }
            for index, call in enumerate(reply.tool_calls)
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
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": _usage(body, reply, completion=len(reply.text.split()) or 1),
    }


def _usage(body: dict[str, Any], reply: ScriptedReply, *, completion: int) -> dict[str, int]:
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:  # a word a token: enough for tests to see counts move
        prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish_reason(reply: ScriptedReply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _arguments(call: ToolCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def _pieces(text: str, size: int) -> Iterator[str]:
    size = max(1, size)
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _error_body(message: str, *, type: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": None, "code": code}}
