"""The fake model of bench/relay.py's ramp: tests/fakes/openai.py's answers, served on an
event loop instead of a thread per connection.

At a thousand relay calls the web service keeps about as many connections to the model
open, with some 300 streams a second. The threaded fake (one thread per connection, all
in one interpreter) then woke late from its waits between chunks: 39 ms late at the
median and 297 ms at p95 with 1,000 connections (5 ms at p95 with 200), a delay the
benchmark would have counted as ours. Here every request is still read, checked,
recorded and answered by FakeOpenAI itself (its `_parse_request`, `_record` and
`_answer`: the same events, refusals and errors); only the sockets are asyncio's.
The answers are what OpenAI sends: the stream as server-sent events over chunked
HTTP/1.1, the connection kept open for the next request
(platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import uvloop

from bench import turns
from tests.fakes.openai import FakeOpenAI, ScriptedReply, _Stream

# The fake model's delays: its first event after 300 ms (the role, no text yet, as OpenAI
# streams), then a chunk of 8 characters (2 tokens, OpenAI's 4 characters a token) every
# 25 ms, 80 tokens a second, as a small chat model streams. Its first token therefore
# comes after FIRST_TOKEN_SECONDS: the vendor's fixed delay, taken out of our figures.
MODEL_FIRST_EVENT = turns.MODEL_FIRST_TOKEN
CHUNK_CHARS = 8
TOKEN_SECONDS = 0.025
FIRST_TOKEN_SECONDS = MODEL_FIRST_EVENT + TOKEN_SECONDS


class RelayOpenAI(FakeOpenAI):
    """Every reply new words (nothing cached), after the fixed first-token delay, then at
    the fixed rate. Numbers are zero-padded so that every first sentence takes as long to
    write (the `<Gather>` side waits for it)."""

    counter = itertools.count()

    def _answer(self, request: Any, problems: list[str]) -> Any:
        with self._lock:
            self._replies.append(
                ScriptedReply(
                    text=reply_text(next(self.counter)),
                    first_delay=MODEL_FIRST_EVENT,
                    chunk_delay=TOKEN_SECONDS,
                    chunk_size=CHUNK_CHARS,
                )
            )
        return super()._answer(request, problems)


def reply_text(number: int) -> str:
    return (
        f"De acuerdo, anoto la respuesta número {number:06d}. "
        f"Su cita {number:06d} queda confirmada para el martes. "
        "¿Puedo ayudarle en algo más?"
    )


async def _serve_connection(
    fake: FakeOpenAI, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:  # as OpenAI's servers answer: no Nagle delay on streamed chunks
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            request = fake._parse_request(method, urlsplit(target), headers, body)
            _scripted, problems = fake._record(request)
            fake._requests.clear()  # nobody reads them here: memory kept flat over the ramp
            answer = fake._answer(request, problems)
            if isinstance(answer, _Stream):
                await _stream(writer, answer)
            else:
                status, answer_headers, content = answer
                head_lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
                head_lines += [f"{name}: {value}" for name, value in answer_headers.items()]
                head_lines.append(f"Content-Length: {len(content)}")
                writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode() + content)
                await writer.drain()
    except ConnectionError:
        return
    except asyncio.CancelledError:
        return  # the fake stops with connections still open: they just close
    finally:
        writer.close()


async def _stream(writer: asyncio.StreamWriter, stream: _Stream) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    await writer.drain()
    for index, event in enumerate(stream.events):
        await asyncio.sleep(stream.first_delay if index == 0 else stream.chunk_delay)
        data = f"data: {event}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _serve(fake_class: type[FakeOpenAI], urls: Any, stop: Any) -> None:
    gc.collect()
    gc.freeze()  # no long collector pauses counted as the server's (see bench.turns)
    fake = fake_class(api_key="bench-key")

    async def main() -> None:
        server = await asyncio.start_server(
            lambda reader, writer: _serve_connection(fake, reader, writer),
            "127.0.0.1",
            0,
            backlog=4096,
        )
        host, port = server.sockets[0].getsockname()[:2]
        urls.put(f"http://{host}:{port}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stop.wait)
        server.close()

    uvloop.run(main())


@contextmanager
def serving(fake_class: type[FakeOpenAI]) -> Iterator[str]:
    """``fake_class`` answering on an event loop in a process of its own: its URL."""
    context = multiprocessing.get_context("fork")
    urls, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(fake_class, urls, stop), daemon=True)
    process.start()
    try:
        yield urls.get(timeout=30)
    finally:
        stop.set()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
