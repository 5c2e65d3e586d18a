"""ElevenLabs at fault: webhook answer times when it fails, and its 429s with our limit on
and off.

Both measures load the web service as production runs it (gunicorn and its uvicorn
workers, started as bench/turns.py starts it) with N simulated AI calls (50 by default,
BENCH_FAULTS_CALLS), answered at BENCH_CALLS_PER_SECOND and talking until all are live and
BENCH_FAULTS_SECONDS (40) more have passed, their callers pausing 2-4 s between turns; the
fake model answers after 300 ms and the fake speech service after 150 ms, each in a process
of its own. Every TwiML request a call makes is timed: its turns, the continuations of
replies whose first line left early (followed at once, or after the <Pause> Twilio would
play), and a holding line's retry; lines spoken with <Say> are counted in the answers.

- Faults: ElevenLabs answers a seeded 20% of its requests with 429 or 5xx, which the
  server retries (ELEVENLABS_MAX_RETRIES as configured, 3 by default) within the
  webhook's deadline (WEBHOOK_DEADLINE_SECONDS). Reported: the worst and p99 answer of
  the turn and continuation webhooks, the answers later than 10 s (the target: none) and
  than Twilio's 15 s, the lines said with <Say>, and errors. The server's
  ELEVENLABS_CONCURRENCY is BENCH_FAULTS_SLOTS (5, the Creator plan's), the fake sets no
  limit of its own.
- Limit: ElevenLabs enforces a plan's concurrency limit (5 requests in flight, Creator)
  and fails nothing else; the same load runs with ELEVENLABS_CONCURRENCY=5 and with 0
  (off). Reported for each: the fake's 429s, the most requests it saw in flight, the
  p95 turn overhead and the lines said with <Say>; and the ratio of 429s, on over off.

BENCH_FAULTS_MEASURES=faults (or limit) runs one of them.

The server's log of each run is kept in var/bench/speech-*-server.log (every request
sends an X-Request-ID, found in its log lines), and the answers later than 10 s, with
their log lines, in var/bench/speech-faults-slow.json.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from bench.harness import BenchElevenLabs, Figure
from bench.turns import (
    CALLER_SECONDS,
    CALLS_PER_SECOND,
    FIXED_DELAYS,
    SPEECH_FIRST_BYTE,
    TWILIO_WEBHOOK_TIMEOUT,
    WARM_UP_CALLS,
    BenchOpenAI,
    _live_calls,
    _no_collector_pauses,
    _serving,
    web_server,
)
from tests.partners import TRUSTED_LIMITS

ROOT = Path(__file__).resolve().parent.parent
CALLS = int(os.environ.get("BENCH_FAULTS_CALLS", "50"))
# How long all the calls talk at once after the last is answered (the measured window).
STEADY_SECONDS = float(os.environ.get("BENCH_FAULTS_SECONDS", "40"))
# The share of ElevenLabs requests answered 429 or 5xx at random, and the draw's seed.
FAILURE_RATE = 0.2
SEED = 20
# The plan's limit the fake enforces in the second measure: Creator's 5 requests at once.
PLAN_LIMIT = 5
# ELEVENLABS_CONCURRENCY of the server under faults: the account's plan, as set up for it.
FAULTS_SLOTS = os.environ.get("BENCH_FAULTS_SLOTS", str(PLAN_LIMIT))
# BENCH_FAULTS_MEASURES=limit runs one of the two.
MEASURES = [m for m in os.environ.get("BENCH_FAULTS_MEASURES", "faults,limit").split(",") if m]
# An answer later than this is late: Twilio waits 15 s, and the deadline (8 s by default)
# keeps every answer well inside it.
TARGET_SECONDS = 10.0
# The answers of the server that are a failure, not a reply: the fallback's apology.
APOLOGIES = (b"Sorry", "problema técnico".encode())
REDIRECT = re.compile(rb"<Redirect[^>]*>([^<]+)</Redirect>")
PAUSE = re.compile(rb'<Pause length="(\d+)"')
FALLBACK_METRIC = re.compile(r'^callcenter_speech_fallbacks_total\{reason="(\w+)"\} (\S+)$', re.M)
BENCH = ROOT / "var" / "bench"
_RUNS = itertools.count(1)


def run() -> list[Figure]:
    campaign = _ai_campaign()
    measures = {"faults": faults, "limit": limit}
    return [figure for name in MEASURES for figure in measures[name](campaign)]


def _ai_campaign():
    """An AI campaign with a synced voice (its calls are made live by ``_live_calls``)."""
    from campaigns.models import Campaign, Partner
    from templates.models import CallTemplate
    from voices.services import sync_voices

    with BenchElevenLabs(api_key="bench-key") as speech:
        with override_settings(ELEVENLABS_BASE_URL=speech.url, ELEVENLABS_API_KEY="bench-key"):
            sync_voices()
    partner = Partner.objects.create(name="Bench Speech Faults", **TRUSTED_LIMITS)
    template = CallTemplate.objects.create(
        partner=partner,
        name="AI",
        greeting="Hola {{ first_name }}, le llamamos de {{ partner }}. Soy un asistente.",
        instructions="Confirma la cita.",
        variables={"first_name": "Ana"},
    )
    return Campaign.objects.create(partner=partner, name="Speech faults", template=template)


# --- The measures --------------------------------------------------------------------------


def faults(campaign) -> list[Figure]:
    run = _run(
        campaign,
        tag="faults",
        speech={"failure_rate": FAILURE_RATE, "seed": SEED},
        ELEVENLABS_CONCURRENCY=FAULTS_SLOTS,
    )
    _keep_slow(run)
    name = f"speech faults @{CALLS} calls"
    turns = run.seconds("turn")
    continuations = run.seconds("continue")
    every = turns + continuations
    worst = max(run.answers, key=lambda answer: answer.seconds, default=None)
    slowest = f"{worst.seconds:.1f} s, {worst.request_id} {worst.path}" if worst else "none"
    setup = (
        f"ElevenLabs fails {FAILURE_RATE:.0%} at random ({run.fake['random_failures']} of "
        f"{run.fake['requests']} requests); ELEVENLABS_MAX_RETRIES "
        f"{settings.ELEVENLABS_MAX_RETRIES}, ELEVENLABS_CONCURRENCY {FAULTS_SLOTS}, deadline "
        f"{settings.WEBHOOK_DEADLINE_SECONDS:g} s"
    )
    return [
        Figure(f"{name}: turn webhook max", _ms(max(turns, default=0)), "ms", setup),
        Figure(
            f"{name}: turn webhook p99",
            _ms(_percentile(turns, 0.99)),
            "ms",
            f"{len(turns)} turns (a holding line's retry included)",
        ),
        Figure(
            f"{name}: continuation max",
            _ms(max(continuations, default=0)),
            "ms",
            f"{len(continuations)} continuations",
        ),
        Figure(f"{name}: continuation p99", _ms(_percentile(continuations, 0.99)), "ms"),
        Figure(
            f"{name}: answers past {TARGET_SECONDS:g} s",
            sum(seconds > TARGET_SECONDS for seconds in every),
            "count",
            f"target 0, of {len(every)} TwiML answers; the slowest: {slowest}",
        ),
        Figure(
            f"{name}: answers past Twilio's timeout",
            sum(seconds > TWILIO_WEBHOOK_TIMEOUT for seconds in every),
            "count",
            f"answered after {TWILIO_WEBHOOK_TIMEOUT:g} s: Twilio would have used the fallback",
        ),
        Figure(f"{name}: lines said with <Say>", run.says, "count", run.say_note()),
        Figure(f"{name}: errors", run.errors, "count", run.error_note()),
    ]


def limit(campaign) -> list[Figure]:
    runs = {
        slots: _run(
            campaign,
            tag=f"limit-{'on' if slots else 'off'}",
            speech={"max_concurrent": PLAN_LIMIT},
            ELEVENLABS_CONCURRENCY=str(slots),
        )
        for slots in (PLAN_LIMIT, 0)
    }
    limiter = "a Redis semaphore" if settings.REDIS_URL else "file locks in DATA_DIR (no Redis)"
    figures = []
    for slots, run in runs.items():
        name = f"speech limit {'on' if slots else 'off'} @{CALLS} calls"
        overhead = [max(0.0, seconds - FIXED_DELAYS) for seconds in run.seconds("turn", True)]
        setting = f"ELEVENLABS_CONCURRENCY={slots}" + (f", {limiter}" if slots else " (off)")
        figures += [
            Figure(
                f"{name}: ElevenLabs 429s",
                run.fake["concurrency_rejections"],
                "count",
                f"{setting}; the fake allows {PLAN_LIMIT} at once, of "
                f"{run.fake['requests']} requests",
            ),
            Figure(f"{name}: max in flight", run.fake["max_in_flight"], "count", "as the fake saw"),
            Figure(
                f"{name}: turn overhead p95",
                _ms(_percentile(overhead, 0.95)),
                "ms",
                f"{len(overhead)} turns with all {CALLS} calls live, beyond "
                f"{int(FIXED_DELAYS * 1000)} ms of fixed delays",
            ),
            Figure(f"{name}: lines said with <Say>", run.says, "count", run.say_note()),
            Figure(f"{name}: errors", run.errors, "count", run.error_note()),
        ]
    on, off = (runs[slots].fake["concurrency_rejections"] for slots in (PLAN_LIMIT, 0))
    figures.append(
        Figure(
            f"speech limit @{CALLS} calls: 429s on / off",
            round(on / off, 3) if off else 0.0,
            "ratio",
            f"{on} / {off}; target 0 (none with the limit on)",
        )
    )
    return figures


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


# --- One run -------------------------------------------------------------------------------


@dataclass
class Answer:
    """One TwiML request of a simulated call, as the call saw it."""

    webhook: str  # "turn" or "continue"
    path: str
    request_id: str
    sent: float  # seconds since the load began
    seconds: float  # to the whole answer
    says: int = 0
    plays: int = 0
    problem: str = ""  # what went wrong: "" for a good answer


@dataclass
class Run:
    """A run's answers, the fake speech service's counters over the load, the server's
    fallbacks by reason (its metrics) and what its log says."""

    answers: list[Answer] = field(default_factory=list)
    all_live_from: float = 0.0
    fake: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    log: str = ""
    log_name: str = ""
    holding_lines: int = 0
    hang_ups: int = 0

    def seconds(self, webhook: str, all_live: bool = False) -> list[float]:
        return [
            answer.seconds
            for answer in self.answers
            if answer.webhook == webhook and (not all_live or answer.sent >= self.all_live_from)
        ]

    @property
    def says(self) -> int:
        return sum(answer.says for answer in self.answers)

    @property
    def errors(self) -> int:
        return sum(bool(answer.problem) for answer in self.answers)

    def say_note(self) -> str:
        played = sum(answer.plays for answer in self.answers)
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.fallbacks.items())
        return (
            f"of {self.says + played} lines; the server counted {reasons or 'none'}"
            f"{'; ' if self.holding_lines else ''}"
            f"{f'{self.holding_lines} holding lines' if self.holding_lines else ''}"
        )

    def error_note(self) -> str:
        kinds = Counter(answer.problem for answer in self.answers if answer.problem)
        told = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        log = Counter(
            kind
            for line in self.log.splitlines()
            for kind, marker in (
                ("retries", "retrying in"),
                ("speech gave up at the deadline", "gave up at the deadline"),
                ("webhook failures", "apologising"),
                ("tracebacks", "Traceback"),
            )
            if marker in line
        )
        logged = ", ".join(f"{count} {kind}" for kind, count in log.items())
        return (
            f"{told or 'must be 0'}; {self.log_name}: {logged or 'no warnings'}"
            f"{f'; {self.hang_ups} calls hung up' if self.hang_ups else ''}"
        )


def _run(campaign, *, tag: str, speech: dict[str, Any], **environment: str) -> Run:
    """The load on a server started with ``environment`` (its log in
    var/bench/speech-``tag``-server.log), the fake speech service configured with
    ``speech``."""
    calls = _live_calls(campaign, CALLS)
    warm_up = _live_calls(campaign, WARM_UP_CALLS)
    log_name = f"speech-{tag}-server.log"
    log = BENCH / log_name
    log.unlink(missing_ok=True)  # each run's log of its own
    # Replies numbered apart from every other run's: no clip of an earlier run is reused.
    numbers = itertools.count(next(_RUNS) * 1_000_000)
    with (
        _serving(BenchOpenAI, separate=True, chunk_delay=0.0, counter=numbers) as model_url,
        _speech_service(delay=SPEECH_FIRST_BYTE, **speech) as (speech_url, counters),
        override_settings(
            OPENAI_BASE_URL=f"{model_url}/v1",
            OPENAI_API_KEY="bench-key",
            ELEVENLABS_BASE_URL=speech_url,
            ELEVENLABS_API_KEY="bench-key",
        ),
    ):
        _free_slots()
        # A call's turns are not cut short by its turn limit within the run.
        with web_server(log_name=log_name, CALL_MAX_TURNS="200", **environment) as (url, _pid):
            asyncio.run(_load(url, warm_up, steady_seconds=0, tag=f"{tag}-warm"))
            fake_before, fallbacks_before = counters(reset=True), _fallbacks(url)
            _no_collector_pauses()
            run = asyncio.run(_load(url, calls, steady_seconds=STEADY_SECONDS, tag=tag))
            fake_after, fallbacks_after = counters(), _fallbacks(url)
    run.fake = {
        name: value if name == "max_in_flight" else value - fake_before[name]
        for name, value in fake_after.items()
    }
    run.fallbacks = {
        reason: round(count - fallbacks_before.get(reason, 0))
        for reason, count in fallbacks_after.items()
        if count - fallbacks_before.get(reason, 0)
    }
    # The warm-up's lines left out: its requests are tagged apart.
    lines = log.read_text(errors="replace").splitlines()
    run.log = "\n".join(line for line in lines if f"bench-{tag}-warm-" not in line)
    run.log_name = log_name
    return run


def _free_slots() -> None:
    """Forget leases of the Redis semaphore a server of an earlier run may have left."""
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        from voices import concurrency

        get_redis_connection("default").delete(concurrency.REDIS_KEY)


def _fallbacks(url: str) -> dict[str, float]:
    """The server's lines said with <Say> so far, by reason (its /metrics, all workers)."""
    import requests

    response = requests.get(f"{url}/metrics", timeout=10)
    if response.status_code != 200:
        return {}
    return {reason: float(count) for reason, count in FALLBACK_METRIC.findall(response.text)}


def _keep_slow(run: Run) -> None:
    """Write the answers later than TARGET_SECONDS, with their log lines, for a look."""
    slow = [
        {
            **asdict(answer),
            "log": [line for line in run.log.splitlines() if answer.request_id in line],
        }
        for answer in sorted(run.answers, key=lambda answer: -answer.seconds)
        if answer.seconds > TARGET_SECONDS
    ]
    BENCH.mkdir(parents=True, exist_ok=True)
    (BENCH / "speech-faults-slow.json").write_text(json.dumps(slow, indent=2))


# --- The fake speech service in a process of its own ---------------------------------------


@contextmanager
def _speech_service(**options: Any) -> Iterator[tuple[str, Callable[..., dict[str, int]]]]:
    """The fake ElevenLabs in a process of its own (see bench.turns.fakes) with
    ``options``: its URL, and a function reading its counters (``reset``: the most in
    flight counts again from now)."""
    context = multiprocessing.get_context("fork")
    commands, answers = context.Queue(), context.Queue()
    process = context.Process(target=_serve_speech, args=(options, commands, answers), daemon=True)
    process.start()

    def counters(*, reset: bool = False) -> dict[str, int]:
        commands.put("reset" if reset else "read")
        return answers.get(timeout=30)

    try:
        yield answers.get(timeout=30), counters
    finally:
        commands.put("stop")
        process.join(timeout=10)


def _serve_speech(options: dict[str, Any], commands: Any, answers: Any) -> None:
    _no_collector_pauses()
    with BenchElevenLabs(api_key="bench-key", **options) as server:
        answers.put(server.url)
        while (command := commands.get()) != "stop":
            answers.put(
                {
                    "requests": len(server.requests),
                    "concurrency_rejections": server.concurrency_rejections,
                    "random_failures": server.random_failures,
                    "max_in_flight": server.max_in_flight,
                }
            )
            if command == "reset":
                server.max_in_flight = 0


# --- The simulated calls -------------------------------------------------------------------


async def _load(url: str, call_ids: list[int], *, steady_seconds: float, tag: str) -> Run:
    """The calls ``call_ids`` answered at CALLS_PER_SECOND, talking until all are live and
    ``steady_seconds`` more have passed; every TwiML request they make, timed (its
    X-Request-ID begins with ``tag``)."""
    import httpx

    from calls import telephony

    run = Run()
    rng = random.Random(SEED)  # noqa: S311 - a reproducible load, not a secret
    pace = 1 / CALLS_PER_SECOND
    run.all_live_from = len(call_ids) * pace
    all_live_until = run.all_live_from + steady_seconds
    tls = ssl.create_default_context()  # one for every client (see bench.turns._load)
    began = time.perf_counter()

    async def one_call(index: int, call_id: int) -> None:
        await asyncio.sleep(index * pace + rng.uniform(0, pace))
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        sid = f"CA{call_id:032d}"
        async with httpx.AsyncClient(timeout=30, limits=limits, verify=tls) as client:
            requests = itertools.count()
            for turn in itertools.count():
                if turn:
                    await asyncio.sleep(rng.uniform(*CALLER_SECONDS))  # the caller speaks
                    if time.perf_counter() - began >= all_live_until:
                        return  # the call ends
                path = f"/twilio/calls/{call_id}/turn"
                form = {"CallSid": sid, "SpeechResult": f"Respuesta {turn}"}
                while path:
                    request_id = f"bench-{tag}-{call_id}-{next(requests)}"
                    answer, content = await ask(client, path, form, request_id)
                    run.answers.append(answer)
                    if answer.problem:
                        break
                    if b"<Hangup" in content:
                        run.hang_ups += 1
                        return
                    path, pause = follow(content)
                    # Twilio sends a redirect's request with the call's details, no words.
                    form = {"CallSid": sid}
                    if pause:
                        await asyncio.sleep(pause)

    async def ask(
        client: httpx.AsyncClient, path: str, form: dict[str, str], request_id: str
    ) -> tuple[Answer, bytes]:
        headers = {
            "X-Twilio-Signature": telephony.sign_request(url=url + path, params=form),
            "X-Request-ID": request_id,
        }
        webhook = "continue" if "/continue" in path else "turn"
        sent = time.perf_counter()
        answer = Answer(
            webhook=webhook, path=path, request_id=request_id, sent=sent - began, seconds=0
        )
        try:
            response = await client.post(url + path, data=form, headers=headers)
        except httpx.HTTPError as error:
            answer.seconds = time.perf_counter() - sent
            answer.problem = type(error).__name__
            return answer, b""
        answer.seconds = time.perf_counter() - sent
        content = response.content
        answer.says, answer.plays = content.count(b"<Say"), content.count(b"<Play")
        if response.status_code != 200:
            answer.problem = f"HTTP {response.status_code}"
        elif any(apology in content for apology in APOLOGIES):
            answer.problem = "the fallback's apology"
        elif b"retry=1" in content:  # not an error: the caller hears it, then the retry
            run.holding_lines += 1
        return answer, content

    def follow(content: bytes) -> tuple[str, int]:
        """The next request Twilio would make on its own: a reply's continuation or a
        holding line's retry (after any <Pause>); "" when the caller speaks next."""
        redirect = REDIRECT.search(content)
        if redirect is None or b"silence=1" in redirect.group(1):
            return "", 0
        target = redirect.group(1).decode().replace("&amp;", "&").removeprefix(url)
        pause = PAUSE.search(content)
        return target, int(pause.group(1)) if pause else 0

    await asyncio.gather(*(one_call(index, call_id) for index, call_id in enumerate(call_ids)))
    return run
