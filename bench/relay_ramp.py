"""The relay benchmark's ramp (bench/relay.py): relay calls added a step at a time to a
running web service, each step measured once its calls are open, until one misses.

Steps (BENCH_RELAY_CALLS) add their calls to those already talking, opening
OPEN_PER_SECOND sockets a second; SETTLE_SECONDS later the step is measured for
STEP_SECONDS: the turns begun in that window, the server's CPU time over it and its
memory at its end. The ramp stops after the first step whose p95 added delay reaches
HOLD_TARGET_MS or that saw an error, or once it has run TIME_BOUND seconds (but not before
it has measured MEASURED_AT calls).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvloop

from bench import turns
from bench.relay_load import RelayCall, RelayLoad, kinds, percentile, play_call, watch_lag
from bench.relay_model import FIRST_TOKEN_SECONDS

STEPS = [
    int(n)
    for n in os.environ.get(
        "BENCH_RELAY_CALLS", "50,100,150,200,300,400,500,750,1000,1500,2000,3000"
    ).split(",")
    if n
]
# How long each step is measured once its calls are open, and the wait before (each new
# call's first words come within CALLER_SECONDS of its setup).
STEP_SECONDS = float(os.environ.get("BENCH_RELAY_SECONDS", "15"))
SETTLE_SECONDS = 5.0
# Sockets opened a second while a step adds its calls: calls answered at a busy hour.
OPEN_PER_SECOND = 100.0
# No step starts once the ramp has run this long: the benchmark stays within minutes.
TIME_BOUND = float(os.environ.get("BENCH_RELAY_MAX_SECONDS", "300"))
HOLD_TARGET_MS = 50.0
# The ramp goes on at least to this many calls, whatever it meets: the added delay's target
# and the comparison with <Gather> are at 100 calls.
MEASURED_AT = 100
WARM_UP_SECONDS = 8.0
# A caller hangs up after this many turns (under CALL_MAX_TURNS, 20, which would end the
# call), and another call takes its place: N calls stay live, each a minute or so long.
TURNS_PER_CALL = 15
FROM_NUMBER = "+34910000000"


@dataclass(frozen=True)
class Step:
    """One level of the ramp: its N, the measured window (perf_counter and wall clock), the
    server's CPU seconds over it, its memory then (and idle), and the calls open then."""

    calls: int
    start: float
    end: float
    wall_start: datetime.datetime
    wall_end: datetime.datetime
    cpu_seconds: float
    rss_bytes: int
    idle_rss_bytes: int
    open_calls: int
    opening_start: float  # when the step began adding its calls: its errors count from then

    def errors(self, load: RelayLoad, until: float | None = None) -> Any:
        """The errors since this step began adding its calls (until ``until``), by kind."""
        end = until if until is not None else float("inf")
        return kinds(load.errors, lambda moment: self.opening_start <= moment < end)


def ramp(campaign: Any) -> tuple[list[Step], RelayLoad]:
    """Warm the web service up, then the steps, up to the first that misses (or the time
    bound). The server is bench/turns.py's: gunicorn with deploy/gunicorn.conf.py."""
    # BENCH_RELAY_WORKERS sets the web workers (WEB_CONCURRENCY; one per core, say).
    workers = os.environ.get("BENCH_RELAY_WORKERS", "")
    environment = {"WEB_CONCURRENCY": workers} if workers else {}
    with turns.web_server(log_name="relay-server.log", **environment) as (_url, server_pid):
        warm_up = relay_calls(campaign, turns.WARM_UP_CALLS)
        calls = relay_calls(campaign, _calls_needed())
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        try:
            runner.run(_warm_up(warm_up))
            turns._no_collector_pauses()
            idle = rss_bytes(server_pid)
            load = RelayLoad()
            steps = runner.run(_ramp(calls, load, server_pid=server_pid, idle=idle))
        finally:
            runner.close()
    return steps, load


def _calls_needed() -> int:
    """Enough calls for every step's callers to hang up and be replaced through the ramp
    (a call lasts TURNS_PER_CALL turns of 2-4 s and a reply, three seconds or more each)."""
    step_seconds = STEP_SECONDS + SETTLE_SECONDS + 1
    slot_seconds = sum(
        count * (step_seconds + (count - before) / OPEN_PER_SECOND)
        for before, count in zip([0, *STEPS], STEPS, strict=False)
    )
    return max(STEPS) + round(slot_seconds / (TURNS_PER_CALL * 3.0))


def relay_calls(campaign: Any, count: int) -> list[RelayCall]:
    """``count`` relay calls answered and greeted, as the answer webhook leaves them (its
    TwiML handed Twilio the socket's URL), with the URL and signature Twilio would use."""
    from calls import telephony
    from calls.links import relay_url
    from calls.models import Call, Turn
    from campaigns.models import Contact
    from voices.services import voice_for_campaign

    voice = voice_for_campaign(campaign=campaign)
    first = campaign.contacts.count()
    contacts = Contact.objects.bulk_create(
        Contact(campaign=campaign, phone=f"+3471{index:07d}", variables={"first_name": "A"})
        for index in range(first, first + count)
    )
    calls = Call.objects.bulk_create(
        Call(
            campaign=campaign,
            contact=contact,
            attempt=1,
            status=Call.Status.IN_PROGRESS,
            transport=campaign.transport,
            from_number=FROM_NUMBER,
            to_number=contact.phone,
            voice=voice,
            provider_sid=f"CA{uuid.uuid4().hex}",  # Twilio's shape: CA and 32 hex digits
        )
        for contact in contacts
    )
    Turn.objects.bulk_create(
        Turn(call=call, sequence=0, role="agent", text="Hola.", started_at=call.created_at)
        for call in calls
    )
    relayed = []
    for call in calls:
        url = relay_url(call.pk)
        signature = telephony.sign_request(url=url, params={})  # Twilio signs no params
        relayed.append(
            RelayCall(
                call.pk, str(call.provider_sid), url, signature, call.to_number, call.contact_id
            )
        )
    return relayed


async def _warm_up(calls: list[RelayCall]) -> None:
    """A few turns on a few calls, not counted: every worker past its first requests."""
    load, stopping = RelayLoad(), asyncio.Event()
    tasks = [asyncio.create_task(_line(iter([call]), load, stopping)) for call in calls]
    await asyncio.sleep(WARM_UP_SECONDS)
    stopping.set()
    await asyncio.gather(*tasks)


async def _line(calls: Iterator[RelayCall], load: RelayLoad, stopping: asyncio.Event) -> None:
    """One of the N live calls: when its caller hangs up, the next call of ``calls`` (shared
    by all the lines) takes its place."""
    for call in calls:
        if stopping.is_set():
            return
        rng = random.Random(call.call_id)  # noqa: S311 - a reproducible load, not a secret
        await play_call(
            call, load, rng=rng, stopping=stopping, from_number=FROM_NUMBER, turns=TURNS_PER_CALL
        )
    if not stopping.is_set():
        load.error("the benchmark ran out of prepared calls")


async def _ramp(
    calls: list[RelayCall], load: RelayLoad, *, server_pid: int, idle: int
) -> list[Step]:
    stopping = asyncio.Event()
    lag = asyncio.create_task(watch_lag(load, stopping))
    tasks: list[asyncio.Task[None]] = []
    steps: list[Step] = []
    began = time.perf_counter()
    waiting = iter(calls)
    for count in STEPS:
        opening = time.perf_counter()
        while len(tasks) < count:
            tasks.append(asyncio.create_task(_line(waiting, load, stopping)))
            await asyncio.sleep(1 / OPEN_PER_SECOND)
        await asyncio.sleep(SETTLE_SECONDS)
        cpu, start = turns._cpu_seconds(server_pid), time.perf_counter()
        wall_start = datetime.datetime.now(datetime.UTC)
        await asyncio.sleep(STEP_SECONDS)
        step = Step(
            calls=count,
            start=start,
            end=time.perf_counter(),
            wall_start=wall_start,
            wall_end=datetime.datetime.now(datetime.UTC),
            cpu_seconds=turns._cpu_seconds(server_pid) - cpu,
            rss_bytes=rss_bytes(server_pid),
            idle_rss_bytes=idle,
            open_calls=load.opened - load.closed,
            opening_start=opening,
        )
        steps.append(step)
        await asyncio.sleep(1)  # the window's last replies
        added, errors = added_ms(load, step), step.errors(load)
        p95 = percentile(added, 0.95)
        print(
            f"relay @{count} calls: added delay p95 {p95:.1f} ms over {len(added)} turns, "
            f"{sum(errors.values())} errors, {step.open_calls} calls open",
            flush=True,
        )
        missed = p95 >= HOLD_TARGET_MS or errors or time.perf_counter() - began > TIME_BOUND
        if missed and count >= MEASURED_AT:
            break
    stopping.set()
    await asyncio.gather(*tasks)
    await lag
    return steps


def added_ms(load: RelayLoad, step: Step) -> list[float]:
    """Twilio's wait for the first token of each turn begun in the step's window, less the
    model's first-token delay (ms; never below 0)."""
    return [
        max(0.0, (turn.first_token - turn.sent - FIRST_TOKEN_SECONDS) * 1000)
        for turn in load.turns
        if step.start <= turn.sent < step.end and turn.first_token is not None
    ]


def turns_in(load: RelayLoad, step: Step) -> int:
    """The turns begun in the step's window."""
    return sum(step.start <= turn.sent < step.end for turn in load.turns)


def server_added_ms(step: Step) -> list[float]:
    """The server's own measure of the same window: Turn.response_ms (the prompt with last
    received, to the first token sent), less the model's first-token delay (ms)."""
    from calls.models import Turn

    return [
        max(0.0, response_ms - FIRST_TOKEN_SECONDS * 1000)
        for response_ms in Turn.objects.filter(
            call__transport="relay",
            started_at__gte=step.wall_start,
            started_at__lt=step.wall_end,
            response_ms__isnull=False,
        ).values_list("response_ms", flat=True)
    ]


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` and its children (gunicorn and its workers)."""
    pages = sum(int(fields[21]) for fields in turns._processes(pid))
    return pages * os.sysconf("SC_PAGE_SIZE")
