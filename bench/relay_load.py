"""Twilio's side of ConversationRelay calls: the load generator of bench/relay.py.

Each simulated call does what Twilio does once a call reaches `<Connect><ConversationRelay>`
(twilio.com/docs/voice/twiml/connect/conversationrelay): it opens the WebSocket given in
`url`, the handshake signed with `X-Twilio-Signature` over that URL and no parameters (as
a webhook is signed: twilio.com/docs/usage/webhooks/webhooks-security), sends `setup`
with the call's SID, then the caller's words as `prompt` messages with `last: true`
(twilio.com/docs/voice/conversationrelay/websocket-messages). The server streams its reply
back as `text` messages, the last one with `last: true`; the caller listens, and speaks
again 2 to 4 s after the reply's last token (seeded, as bench/turns.py's callers do).

Per turn it records when the prompt was sent, when the first `text` arrived and whether a
`last` one did. Errors are counted by kind, never hidden: a refused handshake, an
unexpected close, an `end` (the server gave up the call), a message that is not JSON or of
a type Twilio does not take, and a turn whose `last` token never came.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from bench.turns import CALLER_SECONDS

# What the server may send Twilio (twilio.com/docs/voice/conversationrelay/websocket-messages,
# "Messages your application sends"): anything else Twilio refuses with error 64107.
SERVER_MESSAGES = frozenset({"text", "play", "sendDigits", "language", "end"})
# How long a caller waits for a reply's last token before counting the turn as failed.
TURN_TIMEOUT = 15.0
# How long the handshake and setup may take before the call counts as refused.
OPEN_TIMEOUT = 30.0


@dataclass(frozen=True)
class TurnSample:
    """One turn as Twilio saw it: perf_counter times, the first token's None if none came."""

    call_id: int
    sent: float
    first_token: float | None
    complete: bool  # the `last` token came


@dataclass
class RelayLoad:
    """What the simulated calls saw, for the whole run; the bench cuts it into windows."""

    turns: list[TurnSample] = field(default_factory=list)
    # (perf_counter time, kind) of every error, by when it happened.
    errors: list[tuple[float, str]] = field(default_factory=list)
    opened: int = 0  # calls whose socket is open and setup sent
    closed: int = 0
    # The load generator's own event-loop lag samples (s): a late loop is late readings.
    lag: list[tuple[float, float]] = field(default_factory=list)
    unprompted: Counter[str] = field(default_factory=Counter)  # messages outside a turn

    def error(self, kind: str) -> None:
        self.errors.append((time.perf_counter(), kind))


@dataclass(frozen=True)
class RelayCall:
    """How to reach one call's socket, as the TwiML would tell Twilio."""

    call_id: int
    call_sid: str
    url: str  # ws://... exactly as in <ConversationRelay url>
    signature: str  # X-Twilio-Signature over `url` and no params
    to_number: str  # the contact's
    contact_id: int  # the TwiML's <Parameter name="contact">, sent back in customParameters


def setup_message(call: RelayCall, *, from_number: str) -> str:
    """The `setup` message Twilio sends first, with the fields it documents."""
    return json.dumps(
        {
            "type": "setup",
            "sessionId": f"VX{call.call_id:032d}",
            "accountSid": "AC" + "0" * 32,
            "parentCallSid": "",
            "callSid": call.call_sid,
            "from": from_number,
            "to": call.to_number,
            "forwardedFrom": call.to_number,
            "callerName": "",
            "direction": "outbound-api",
            "callType": "PSTN",
            "callStatus": "IN-PROGRESS",
            "customParameters": {"contact": str(call.contact_id)},
        }
    )


def prompt_message(words: str) -> str:
    """The caller's final words of an utterance, as Twilio's speech recognition sends them."""
    return json.dumps({"type": "prompt", "voicePrompt": words, "lang": "es-ES", "last": True})


async def play_call(
    call: RelayCall,
    load: RelayLoad,
    *,
    rng: random.Random,
    stopping: asyncio.Event,
    from_number: str,
    turns: int,
) -> None:
    """One call from its socket's opening until its caller has spoken ``turns`` times or
    ``stopping`` is set; then it ends after its turn, closing the socket as Twilio does
    when the caller hangs up."""
    headers = {"X-Twilio-Signature": call.signature}
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            socket = await connect(
                call.url,
                additional_headers=headers,
                # Twilio's client offers no compression that its docs mention; text frames
                # of a few bytes gain nothing from it and cost CPU on both sides.
                compression=None,
                ping_interval=None,
                user_agent_header=None,
                proxy=None,
                open_timeout=OPEN_TIMEOUT,
            )
            await socket.send(setup_message(call, from_number=from_number))
    except InvalidStatus as error:
        load.error(f"handshake refused ({error.response.status_code})")
        return
    except (OSError, TimeoutError, WebSocketException) as error:
        load.error(f"handshake failed ({type(error).__name__})")
        return
    load.opened += 1
    try:
        await _converse(socket, call, load, rng=rng, stopping=stopping, turns=turns)
    finally:
        await socket.close()
        load.closed += 1


async def _converse(
    socket: ClientConnection,
    call: RelayCall,
    load: RelayLoad,
    *,
    rng: random.Random,
    stopping: asyncio.Event,
    turns: int,
) -> None:
    # The first words come a pause after the call starts, as after the greeting.
    pause = rng.uniform(0, CALLER_SECONDS[1])
    for number in range(turns):
        if not await _listen(socket, load, seconds=pause, stopping=stopping):
            return
        sent = time.perf_counter()
        try:
            await socket.send(prompt_message(f"Respuesta {number}"))
        except ConnectionClosed:
            load.error("closed by the server")
            return
        first, complete, alive = await _reply(socket, load)
        load.turns.append(TurnSample(call.call_id, sent, first, complete))
        if not alive:
            return
        pause = rng.uniform(*CALLER_SECONDS)  # the caller hears the reply, then speaks
    await _listen(socket, load, seconds=pause, stopping=stopping)  # hears the last reply


async def _listen(
    socket: ClientConnection, load: RelayLoad, *, seconds: float, stopping: asyncio.Event
) -> bool:
    """The caller listens ``seconds``: whatever the server sends meanwhile is unprompted.
    False when the call is over (the bench stops it, or the server closed it)."""
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        if stopping.is_set():
            return False
        try:
            raw = await asyncio.wait_for(socket.recv(), timeout=min(left, 1.0))
        except TimeoutError:
            continue
        except ConnectionClosed:
            load.error("closed by the server")
            return False
        kind = _kind(raw, load)
        if kind == "end":
            load.error("end sent by the server")
            return False
        load.unprompted[kind] += 1
    return not stopping.is_set()


async def _reply(socket: ClientConnection, load: RelayLoad) -> tuple[float | None, bool, bool]:
    """Read a reply: when its first token came, whether its last one did, and whether the
    socket is still open."""
    first = None
    try:
        async with asyncio.timeout(TURN_TIMEOUT):
            while True:
                raw = await socket.recv()
                now = time.perf_counter()
                kind = _kind(raw, load)
                if kind == "end":
                    load.error("end sent by the server")
                    return first, False, False
                if kind != "text":
                    continue  # play, language, sendDigits: no token of the reply
                if first is None:
                    first = now
                if json.loads(raw).get("last") is True:
                    return first, True, True
    except TimeoutError:
        load.error("reply without its last token")
        return first, False, True
    except ConnectionClosed:
        load.error("closed by the server")
        return first, False, False


def _kind(raw: str | bytes, load: RelayLoad) -> str:
    """The message's type, an error counted when Twilio would refuse it."""
    try:
        message = json.loads(raw)
    except ValueError:
        load.error("not JSON")
        return "invalid"
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in SERVER_MESSAGES:
        load.error(f"message type {kind!r}")
        return "invalid"
    return str(kind)


async def watch_lag(load: RelayLoad, stopping: asyncio.Event, *, every: float = 0.05) -> None:
    """Sample how late this event loop wakes up: the load generator's own delay, which its
    readings of the server carry."""
    while not stopping.is_set():
        before = time.perf_counter()
        await asyncio.sleep(every)
        load.lag.append((before, time.perf_counter() - before - every))


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` of the way up ``values`` (nearest rank), 0 with none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def in_window(times: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for moment, value in times if start <= moment < end]


def kinds(errors: list[tuple[float, str]], keep: Callable[[float], bool]) -> Counter[str]:
    return Counter(kind for moment, kind in errors if keep(moment))
