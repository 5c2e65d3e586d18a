"""The relay benchmark's own parts: Twilio's side of a call, and the fake model it uses."""

from __future__ import annotations

import asyncio
import json
import random
import time

import openai
from websockets.asyncio.server import ServerConnection, serve

from bench import relay
from bench.relay_load import RelayCall, RelayLoad, play_call
from bench.relay_model import FIRST_TOKEN_SECONDS, RelayOpenAI, reply_text, serving


def _call(port: int) -> RelayCall:
    return RelayCall(
        7, "CA" + "a" * 32, f"ws://127.0.0.1:{port}/relay/7/", "signed", "+34600000007", 3
    )


async def _converse(*, ending: bool) -> tuple[RelayLoad, list[dict], list[str]]:
    """One simulated call against a server that answers each prompt with two tokens (or,
    ``ending``, with an `end` after its first reply)."""
    received: list[dict] = []
    signatures: list[str] = []

    async def handler(socket: ServerConnection) -> None:
        signatures.append(socket.request.headers["X-Twilio-Signature"])
        async for raw in socket:
            message = json.loads(raw)
            received.append(message)
            if message["type"] == "prompt":
                await socket.send(json.dumps({"type": "text", "token": "Hola", "last": False}))
                await socket.send(json.dumps({"type": "text", "token": "", "last": True}))
                if ending:
                    await socket.send(json.dumps({"type": "end", "handoffData": "{}"}))

    load, stopping = RelayLoad(), asyncio.Event()
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        await play_call(
            _call(port),
            load,
            rng=random.Random(1),
            stopping=stopping,
            from_number="+34910000000",
            turns=2,
        )
    return load, received, signatures


def test_play_call_sends_setup_and_prompts_and_times_each_reply(monkeypatch):
    # given callers who speak at once
    monkeypatch.setattr("bench.relay_load.CALLER_SECONDS", (0.0, 0.01))

    # when
    load, received, signatures = asyncio.run(_converse(ending=False))

    # then
    assert signatures == ["signed"]
    setup, *prompts = received
    assert setup["type"] == "setup" and setup["callSid"] == "CA" + "a" * 32
    assert setup["customParameters"] == {"contact": "3"}
    assert [p["voicePrompt"] for p in prompts] == ["Respuesta 0", "Respuesta 1"]
    assert all(p["last"] is True for p in prompts)
    assert len(load.turns) == 2
    assert all(
        t.complete and t.first_token is not None and t.first_token >= t.sent for t in load.turns
    )
    assert load.errors == [] and load.opened == load.closed == 1


def test_play_call_counts_the_servers_end_as_an_error(monkeypatch):
    monkeypatch.setattr("bench.relay_load.CALLER_SECONDS", (0.0, 0.01))

    load, _received, _signatures = asyncio.run(_converse(ending=True))

    assert [kind for _moment, kind in load.errors] == ["end sent by the server"]
    assert len(load.turns) == 1


def test_relay_model_streams_the_fakes_answer_after_its_first_token_delay():
    async def first_reply(url: str) -> tuple[float, str]:
        client = openai.AsyncOpenAI(api_key="bench-key", base_url=f"{url}/v1", max_retries=0)
        started, first, text = time.perf_counter(), None, ""
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hola"}]
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                text += chunk.choices[0].delta.content
        assert first is not None
        return first - started, text

    with serving(RelayOpenAI) as url:
        waited, text = asyncio.run(first_reply(url))

    assert text == reply_text(0)
    assert FIRST_TOKEN_SECONDS <= waited < FIRST_TOKEN_SECONDS + 1.0


def test_first_sentence_seconds_is_when_the_splitter_sees_the_first_sentence_end():
    # "De acuerdo, anoto la respuesta número 000000. " ends in the sixth 8-character chunk,
    # which comes six chunks after the role's event.
    assert relay.first_sentence_seconds() == 6 * relay.TOKEN_SECONDS
