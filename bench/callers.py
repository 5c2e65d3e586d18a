"""Simulated calls as Twilio drives them: each caller's turns and each call's status
callbacks, signed and posted to the web service, timed (the turn benchmarks' load).

``Carrier`` is Twilio's side: it signs every webhook for the public URL and posts it; a
subclass chooses where a redelivered callback goes and what is done with each answer
(bench/cluster.py fetches the clips it plays and counts the backends that served it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# The pace calls are answered at: a dialer places no more than the account's calls per
# second (Twilio's default is 1; TWILIO_MAX_CPS), so N calls take N / this to be live.
CALLS_PER_SECOND = float(os.environ.get("BENCH_CALLS_PER_SECOND", "10"))
# How long all N calls talk at once after the last one is answered: the measured window,
# long enough for some 400 turns at 50 calls (a p95 of fewer moves with a handful of them).
STEADY_SECONDS = 30.0
# Seconds a simulated caller takes to hear a reply and say the next thing.
CALLER_SECONDS = (2.0, 4.0)
# The status callbacks Twilio sends for an answered call, in its order, by SequenceNumber.
STATUS_CALLBACKS = ["initiated", "ringing", "in-progress"]


@dataclass
class Load:
    """What the simulated calls saw: answer times in seconds, and errors."""

    turns: list[float] = field(default_factory=list)  # while all the calls are live
    ramp_turns: list[float] = field(default_factory=list)  # while they are being answered
    statuses: list[float] = field(default_factory=list)
    turn_errors: int = 0
    status_errors: int = 0
    # What went wrong, by kind ("HTTP 500", "ReadTimeout"...): errors are told, not hidden.
    problems: Counter[str] = field(default_factory=Counter)
    # Turns each call asked (by call id), answered or not: what the database must hold.
    turns_sent: Counter[int] = field(default_factory=Counter)


class Carrier:
    """Twilio's side of the load: every webhook signed as Twilio signs it
    (X-Twilio-Signature, RequestValidator over the URL it was given: ``url``, the public
    one) and posted there."""

    def __init__(self, url: str) -> None:
        self.url = url

    def headers(self, path: str, form: dict[str, str]) -> dict[str, str]:
        from calls import telephony

        return {"X-Twilio-Signature": telephony.sign_request(url=self.url + path, params=form)}

    async def post(
        self, client: httpx.AsyncClient, path: str, form: dict[str, str]
    ) -> httpx.Response:
        return await client.post(self.url + path, data=form, headers=self.headers(path, form))

    async def redeliver(
        self,
        client: httpx.AsyncClient,
        path: str,
        form: dict[str, str],
        first: httpx.Response | None,
    ) -> httpx.Response:
        """A callback delivered again (Twilio retries one whose answer it did not get):
        to the same public URL. ``first`` is the answer to the first delivery, if any."""
        return await self.post(client, path, form)

    async def answered(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        """What Twilio does with a turn's TwiML answer besides following its <Redirect>
        (nothing here: the load measures the webhooks)."""


async def simulate_calls(
    carrier: Carrier | str, call_ids: list[int], *, steady_seconds: float = STEADY_SECONDS
) -> Load:
    """Calls ``call_ids`` (live, as turns._live_calls leaves them) talking through
    ``carrier`` (or straight to a server's URL): answered at CALLS_PER_SECOND, each
    caller speaking every CALLER_SECONDS until all are live and ``steady_seconds`` more
    have passed, with their status callbacks (the last one delivered twice) meanwhile."""
    import httpx

    if isinstance(carrier, str):
        carrier = Carrier(carrier)
    url = carrier.url
    load = Load()
    rng = random.Random(7)  # noqa: S311 - a reproducible load, not a secret

    # Call k is answered at about k / CALLS_PER_SECOND; all are live from the last one's
    # answer until the first one hangs up, after STEADY_SECONDS more.
    pace = 1 / CALLS_PER_SECOND
    all_live_from = len(call_ids) * pace
    all_live_until = all_live_from + steady_seconds
    # One TLS context for every client (the URLs are plain HTTP; httpx makes a context
    # anyway): each client loading its own took 21 ms of CPU and 0.8 MB.
    tls = ssl.create_default_context()
    began = time.perf_counter()

    async def one_call(index: int, call_id: int) -> None:
        await asyncio.sleep(index * pace + rng.uniform(0, pace))
        # A client of its own, as each call's requests are separate to Twilio: two
        # connections, for its turns and its status callbacks at once. One client for all
        # the calls would do for 50, but its pool looks at every connection on every
        # request: at 200 calls that took most of the load generator's core, its wait
        # counted as the server's.
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(timeout=30, limits=limits, verify=tls) as client:
            callbacks = asyncio.create_task(status_callbacks(client, call_id, rng.uniform(0, 6)))
            for turn in itertools.count():
                if turn:
                    await asyncio.sleep(rng.uniform(*CALLER_SECONDS))  # the caller speaks
                    if time.perf_counter() - began >= all_live_until:
                        break  # the call ends
                path = f"/twilio/calls/{call_id}/turn"
                form = {"CallSid": f"CA{call_id:032d}", "SpeechResult": f"Respuesta {turn}"}
                load.turns_sent[call_id] += 1
                started = time.perf_counter()
                try:
                    response = await carrier.post(client, path, form)
                except httpx.HTTPError as error:
                    load.turn_errors += 1
                    load.problems[f"turn: {type(error).__name__}"] += 1
                    continue
                latency = time.perf_counter() - started
                if started - began >= all_live_from:
                    load.turns.append(latency)
                else:  # calls are still being answered
                    load.ramp_turns.append(latency)
                while True:
                    if response.status_code != 200:
                        load.turn_errors += 1
                        load.problems[f"turn: HTTP {response.status_code}"] += 1
                        break
                    if (
                        b"Sorry" in response.content
                        or "problema técnico".encode() in response.content
                    ):
                        load.turn_errors += 1
                        load.problems["turn: the fallback's apology"] += 1
                        break
                    await carrier.answered(client, response)
                    if b"/continue?" not in response.content:
                        break
                    path = response.content.split(b"<Redirect")[1].split(b">")[1].split(b"<")[0]
                    path = path.decode().replace("&amp;", "&").removeprefix(url)
                    try:
                        response = await carrier.post(client, path, form)
                    except httpx.HTTPError as error:
                        load.turn_errors += 1
                        load.problems[f"turn: {type(error).__name__}"] += 1
                        break
            await callbacks

    async def status_callbacks(client: httpx.AsyncClient, call_id: int, delay: float) -> None:
        # Late, as Twilio's often are, and the last one delivered twice (a retry).
        await asyncio.sleep(delay)
        path = f"/twilio/calls/{call_id}/status"
        sequence = [*enumerate(STATUS_CALLBACKS), (2, STATUS_CALLBACKS[2])]
        previous: httpx.Response | None = None
        for delivery, (number, status) in enumerate(sequence):
            form = {
                "CallSid": f"CA{call_id:032d}",
                "CallStatus": status,
                "SequenceNumber": str(number),
                "Timestamp": "Sat, 28 Nov 2026 10:00:00 +0000",
            }
            again = delivery == len(STATUS_CALLBACKS)
            started = time.perf_counter()
            try:
                if again:
                    response = await carrier.redeliver(client, path, form, previous)
                else:
                    response = await carrier.post(client, path, form)
            except httpx.HTTPError as error:
                load.status_errors += 1
                load.problems[f"status: {type(error).__name__}"] += 1
                previous = None
                continue
            load.statuses.append(time.perf_counter() - started)
            previous = response
            if response.status_code != 204:
                load.status_errors += 1
                load.problems[f"status: HTTP {response.status_code}"] += 1
            await asyncio.sleep(rng.uniform(0.05, 0.5))

    await asyncio.gather(*(one_call(index, call_id) for index, call_id in enumerate(call_ids)))
    return load
