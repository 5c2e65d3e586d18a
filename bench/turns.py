"""AI turns: time to first audio of a streamed reply, and turn overhead under load.

The fake model answers after 300 ms to its first token and the fake speech service after
150 ms to its first byte (the fixed delays of issue 5); every reply is new text, so no
clip is ever reused. Two measures:

- Time to first audio: how long the caller waits before the reply starts playing, for
  the streamed approach (the first sentence is voiced while the model still writes, and
  played at once) against the serial one (the whole reply, then the whole speech), in
  one process, as a ratio.
- Webhooks under load: the web service as production runs it (gunicorn and its uvicorn
  workers, deploy/gunicorn.conf.py) answering the turn webhook of N
  concurrent calls (50, 200 and 500 by default; BENCH_TURN_CONCURRENCY="50" for one
  level); overhead is the wait for the first TwiML minus the fixed delays. Like real
  callers, each simulated call listens and speaks between two turns (2-4 s). The calls
  are answered at the pace a dialer can place them (BENCH_CALLS_PER_SECOND, 10 by
  default: ten times a Twilio account's default of 1, TWILIO_MAX_CPS), and each keeps
  talking until every call has been answered and STEADY_SECONDS more have passed. The
  overhead "@N calls" is of the turns made while all N calls are live; the turns made
  while the calls are still being answered (fewer of them at once) are reported apart.
  Meanwhile Twilio's status callbacks of the same calls (initiated, ringing, answered,
  and one retried delivery) reach the status webhook, whose whole answer time is its
  overhead (it waits for no vendor). Errors are counted, never hidden; the server's own
  CPU time is reported per turn.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.test import override_settings

from bench.callers import CALLER_SECONDS as CALLER_SECONDS
from bench.callers import CALLS_PER_SECOND
from bench.callers import Load as Load
from bench.callers import simulate_calls as _load
from bench.harness import BenchElevenLabs, Figure, fake_elevenlabs
from bench.servers import cpu_seconds as _cpu_seconds
from bench.servers import processes as _processes
from bench.servers import web_server
from tests.fakes.openai import FakeOpenAI, ScriptedReply
from tests.partners import TRUSTED_LIMITS

ROOT = Path(__file__).resolve().parent.parent
MODEL_FIRST_TOKEN = 0.300
SPEECH_FIRST_BYTE = 0.150
FIXED_DELAYS = MODEL_FIRST_TOKEN + SPEECH_FIRST_BYTE
SAMPLES = 15
CONCURRENCY = [
    int(n) for n in os.environ.get("BENCH_TURN_CONCURRENCY", "50,200,500").split(",") if n
]
# Calls made before the measured load, as a running service has made some: every worker
# has then served its first requests (which also pay for what it makes once, its database
# connections and the like) and the figures are of the service at work, not starting.
WARM_UP_CALLS = 20
# Twilio gives a webhook 15 s to answer, then gives up (error 11200) and tries the
# fallback URL: an answer later than this reached no caller.
TWILIO_WEBHOOK_TIMEOUT = 15.0


class BenchOpenAI(FakeOpenAI):
    """Every reply new words (nothing cached), after the fixed first-token delay."""

    counter = itertools.count()
    chunk_delay = 0.0

    def _answer(self, request, problems):  # type: ignore[override]
        number = next(self.counter)
        with self._lock:
            self._replies.append(
                ScriptedReply(
                    text=(
                        f"De acuerdo, anoto la respuesta número {number}. "
                        f"Su cita {number} queda confirmada para el martes. "
                        "¿Puedo ayudarle en algo más?"
                    ),
                    first_delay=MODEL_FIRST_TOKEN,
                    chunk_delay=self.chunk_delay,
                    chunk_size=8,
                )
            )
        return super()._answer(request, problems)


@contextmanager
def fakes(*, chunk_delay: float, separate: bool = False) -> Iterator[None]:
    """The fake model and speech service, with settings pointing at them. ``separate``
    runs each in a process of its own, so that under load their Python work does not
    compete with the load generator's for one interpreter (it is the server under test
    that must be measured, not the fakes)."""
    with (
        _serving(BenchOpenAI, separate=separate, chunk_delay=chunk_delay) as model_url,
        _serving(BenchElevenLabs, separate=separate, delay=SPEECH_FIRST_BYTE) as speech_url,
        override_settings(
            OPENAI_BASE_URL=f"{model_url}/v1",
            OPENAI_API_KEY="bench-key",
            MODEL_TIMEOUT=5.0,
            ELEVENLABS_BASE_URL=speech_url,
            ELEVENLABS_API_KEY="bench-key",
        ),
    ):
        yield


@contextmanager
def _serving(server_class: type, *, separate: bool, **attributes: Any) -> Iterator[str]:
    if not separate:
        with server_class(api_key="bench-key") as server:
            for name, value in attributes.items():
                setattr(server, name, value)
            yield server.url
        return
    context = multiprocessing.get_context("fork")
    urls, stop = context.Queue(), context.Event()
    process = context.Process(
        target=_serve_until, args=(server_class, attributes, urls, stop), daemon=True
    )
    process.start()
    try:
        yield urls.get(timeout=30)
    finally:
        stop.set()
        process.join(timeout=10)


def _serve_until(server_class: type, attributes: dict, urls: Any, stop: Any) -> None:
    _no_collector_pauses()
    with server_class(api_key="bench-key") as server:
        for name, value in attributes.items():
            setattr(server, name, value)
        urls.put(server.url)
        stop.wait()


def run() -> list[Figure]:
    call = _ai_call()
    figures = time_to_first_audio(call)
    for concurrency in CONCURRENCY:
        figures += turn_overhead(call.campaign, concurrency)
    return figures


def _ai_call():
    """A live AI call (greeted) on a campaign with a synced voice."""
    from calls.models import Call
    from campaigns.models import Campaign, Partner
    from templates.models import CallTemplate
    from voices.services import sync_voices

    with fake_elevenlabs():
        sync_voices()
    partner = Partner.objects.create(name="Bench Turns", **TRUSTED_LIMITS)
    template = CallTemplate.objects.create(
        partner=partner,
        name="AI",
        greeting="Hola {{ first_name }}, le llamamos de {{ partner }}. Soy un asistente.",
        instructions="Confirma la cita.",
        variables={"first_name": "Ana"},
    )
    campaign = Campaign.objects.create(partner=partner, name="Turns", template=template)
    [call_id] = _live_calls(campaign, 1)
    return Call.objects.select_related("campaign__template", "contact").get(pk=call_id)


# --- Time to first audio ------------------------------------------------------------------


def time_to_first_audio(call) -> list[Figure]:
    from calls import conversation, model_turns, streaming
    from calls.services import speech_for_call

    async def measure() -> tuple[list[float], list[float]]:
        streamed, serial = [], []
        for _ in range(SAMPLES):
            pending = await sync_to_async(model_turns.pending_reply, thread_sensitive=False)(
                call, retrying=False
            )
            started = time.perf_counter()
            await streaming.reply(pending)
            streamed.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = await conversation.stream_reply(
                system=pending.system,
                history=pending.history,
                contact=pending.contact,
                answer_schema=pending.answer_schema,
            )
            await sync_to_async(speech_for_call, thread_sensitive=False)(
                call=call, text=answer.text
            )
            serial.append(time.perf_counter() - started)
        await asyncio.gather(*streaming._BACKGROUND.values())  # replies still finishing their tails
        return streamed, serial

    # A model that writes like a real one: the reply's three sentences take ~0.5 s.
    with fakes(chunk_delay=0.04):
        streamed, serial = async_to_sync(measure)()
    streamed_ms, serial_ms = statistics.median(streamed) * 1000, statistics.median(serial) * 1000
    return [
        Figure("turn: time to first audio, streamed (median)", round(streamed_ms), "ms"),
        Figure("turn: time to first audio, serial (median)", round(serial_ms), "ms"),
        Figure(
            "turn: streamed / serial time to first audio",
            round(streamed_ms / serial_ms, 2),
            "ratio",
            "target <= 0.6",
        ),
    ]


# --- Overhead under load ----------------------------------------------------------------


def turn_overhead(campaign, concurrency: int) -> list[Figure]:
    calls = _live_calls(campaign, concurrency)
    warm_up = _live_calls(campaign, WARM_UP_CALLS)
    # The fake speech service has no concurrency limit: with none on our side either, the
    # figures are our own overhead (speech_faults measures the account's limit at work).
    limit = os.environ.get("BENCH_ELEVENLABS_CONCURRENCY", "0")
    with (
        fakes(chunk_delay=0.0, separate=True),
        web_server(ELEVENLABS_CONCURRENCY=limit) as (url, server_pid),
    ):
        workers = len(_processes(server_pid)) - 1
        # Not counted: workers past their first requests.
        asyncio.run(_load(url, warm_up, steady_seconds=0))
        cpu_before = _cpu_seconds(server_pid)
        _no_collector_pauses()
        load = asyncio.run(_load(url, calls))
        cpu = _cpu_seconds(server_pid) - cpu_before
    overhead = overhead_ms(load.turns)
    ramp = overhead_ms(load.ramp_turns)
    every_turn = load.turns + load.ramp_turns
    status_ms = sorted(latency * 1000 for latency in load.statuses)

    note = (
        f"{len(load.turns)} turns with all {concurrency} calls live, beyond "
        f"{int(FIXED_DELAYS * 1000)} ms of fixed delays, {workers} web workers"
    )
    # What the server itself measured of the same turns: the model's time (the fake's
    # 300 ms plus its streaming, as the server sees it) tells a slow fake from our overhead.
    from calls.models import Turn

    model_ms = sorted(
        Turn.objects.filter(call_id__in=calls, model_ms__isnull=False).values_list(
            "model_ms", flat=True
        )
    )
    if model_ms:
        extra = [
            Figure(
                f"turn model time @{concurrency} calls: p95 (server-side)",
                model_ms[min(len(model_ms) - 1, int(0.95 * len(model_ms)))],
                "ms",
                f"fake model answers in {int(MODEL_FIRST_TOKEN * 1000)} ms",
            )
        ]
    else:
        extra = []
    return [
        *extra,
        Figure(f"turn overhead @{concurrency} calls: p50", percentile(overhead, 0.50), "ms", note),
        Figure(
            f"turn overhead @{concurrency} calls: p95",
            percentile(overhead, 0.95),
            "ms",
            "target < 50" if concurrency == 50 else "",
        ),
        Figure(f"turn overhead @{concurrency} calls: p99", percentile(overhead, 0.99), "ms"),
        Figure(
            f"turn overhead while {concurrency} calls are answered: p95",
            percentile(ramp, 0.95),
            "ms",
            f"{len(ramp)} turns, calls answered at {CALLS_PER_SECOND:g} a second",
        ),
        Figure(
            f"turn errors @{concurrency} calls",
            load.turn_errors,
            "count",
            _problems(load.problems, "turn: ") or "must be 0",
        ),
        Figure(
            f"turns past Twilio's timeout @{concurrency} calls",
            sum(latency > TWILIO_WEBHOOK_TIMEOUT for latency in every_turn),
            "count",
            f"answered after {TWILIO_WEBHOOK_TIMEOUT:g} s: Twilio would have used the fallback",
        ),
        Figure(
            f"status webhook @{concurrency} calls: p50",
            percentile(status_ms, 0.50),
            "ms",
            f"{len(load.statuses)} callbacks during the turns",
        ),
        Figure(f"status webhook @{concurrency} calls: p95", percentile(status_ms, 0.95), "ms"),
        Figure(f"status webhook @{concurrency} calls: p99", percentile(status_ms, 0.99), "ms"),
        Figure(
            f"status webhook errors @{concurrency} calls",
            load.status_errors,
            "count",
            _problems(load.problems, "status: ") or "must be 0",
        ),
        Figure(
            f"status callbacks past Twilio's timeout @{concurrency} calls",
            sum(latency > TWILIO_WEBHOOK_TIMEOUT for latency in load.statuses),
            "count",
            "Twilio would have retried them",
        ),
        Figure(
            f"server CPU per turn @{concurrency} calls",
            round(cpu * 1000 / max(1, len(every_turn)), 1),
            "ms",
            "the web service's user+system time over the load, status callbacks included",
        ),
    ]


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of the sorted ``values`` fall (0 for none)."""
    if not values:
        return 0.0
    return round(values[min(len(values) - 1, int(share * len(values)))], 1)


def overhead_ms(latencies: list[float]) -> list[float]:
    """Turn answer times (seconds) as overheads: milliseconds beyond the fixed delays, sorted."""
    return sorted(max(0.0, latency - FIXED_DELAYS) * 1000 for latency in latencies)


def _no_collector_pauses() -> None:
    """Keep this process's garbage collector from stopping it for long: what it holds so
    far is never scanned again (gc.freeze, as the web service does after start-up).

    The load generator and the fakes run in the bench's process, or in copies of it,
    which hold all of Django and the bench: a full collection of that took 170 ms, and
    any such pause, while answers wait to be read or sent, showed as the server's
    overhead."""
    gc.collect()
    gc.freeze()


def _problems(problems: Counter[str], prefix: str) -> str:
    return ", ".join(
        f"{count} {kind.removeprefix(prefix)}"
        for kind, count in problems.most_common()
        if kind.startswith(prefix)
    )


def _live_calls(campaign, count: int) -> list[int]:
    """Calls answered and greeted, as the dial and the answer webhook leave them: with
    their SID and the voice their greeting chose."""
    from calls.models import Call, Turn
    from campaigns.models import Contact
    from voices.services import voice_for_campaign

    voice = voice_for_campaign(campaign=campaign)
    ids = []
    first = campaign.contacts.count()
    for index in range(first, first + count):
        contact = Contact.objects.create(
            campaign=campaign, phone=f"+346009{index:05d}", variables={"first_name": "A"}
        )
        call = Call.objects.create(
            campaign=campaign,
            contact=contact,
            attempt=1,
            status=Call.Status.IN_PROGRESS,
            from_number="+34910000000",
            to_number=contact.phone,
            voice=voice,
        )
        call.provider_sid = f"CA{call.pk:032d}"
        call.save(update_fields=["provider_sid"])
        Turn.objects.create(
            call=call, sequence=0, role="agent", text="Hola.", started_at=call.created_at
        )
        ids.append(call.pk)
    return ids
