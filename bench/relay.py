"""ConversationRelay: our added delay per turn, the most relay calls the machine holds, and
the caller's wait over the relay against `<Gather>` for the same callers.

The fake model (bench/relay_model.py) sends its first event after 300 ms and then writes
at a fixed rate (8 characters every 25 ms, 80 tokens a second): its first token comes
after 325 ms, the vendor's fixed delay taken out of every figure. The web service runs as
production runs it (gunicorn and its uvicorn workers, which use uvloop and httptools:
deploy/gunicorn.conf.py, started as bench/turns.py starts it). bench/relay_load.py plays
Twilio's side of N relay calls whose callers speak 2 to 4 s after each reply. Three
measures:

- Added delay: from a prompt to the reply's first token, less the model's 325 ms. Seen
  by Twilio (the load generator: prompt sent, first `text` received) and by the server
  (`Turn.response_ms`: the prompt received, the first token sent). Target: p95 under
  10 ms at 100 calls.
- The ramp (bench/relay_ramp.py): N goes up a step at a time, each step's calls added to
  those already talking, until the p95 reaches 50 ms, an error shows or a time bound
  passes: the most calls held with p95 under 50 ms and no error (target: at least
  1,000), the server's memory per live call and its CPU time per turn.
- `<Gather>` against the relay: the same callers (lines, seeded 2-4 s pauses, model) over
  the turn webhook (bench/turns.py's load at COMPARE_CALLS calls) and over the relay (the
  ramp's step of as many calls): the caller's wait for the first word of each reply,
  each side less its vendors' fixed delays, side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from bench import relay_model, turns
from bench.harness import BenchElevenLabs, Figure, fake_elevenlabs
from bench.relay_load import RelayLoad, in_window, percentile
from bench.relay_model import (
    CHUNK_CHARS,
    FIRST_TOKEN_SECONDS,
    MODEL_FIRST_EVENT,
    TOKEN_SECONDS,
    RelayOpenAI,
    reply_text,
)
from bench.relay_ramp import (
    HOLD_TARGET_MS,
    MEASURED_AT,
    STEPS,
    Step,
    added_ms,
    ramp,
    server_added_ms,
    turns_in,
)
from calls.sentences import SentenceSplitter
from tests.partners import TRUSTED_LIMITS

SPEECH_FIRST_BYTE = turns.SPEECH_FIRST_BYTE
ADDED_TARGET_MS = 10.0  # p95 at 100 calls
HELD_TARGET = 1000
BACKLOG = 4096  # the kernel's somaxconn here
COMPARE_CALLS = MEASURED_AT


class LongBacklog:
    """A threaded fake that takes many new connections at once, as the vendors' servers do:
    socketserver listens with a backlog of 5 (``request_queue_size``), and when the web
    service's connection pool grows by a hundred at once the connections past it are
    dropped and retried by the kernel 1 s later. Listening again sets the backlog."""

    _httpd: Any

    def start(self) -> Any:
        started = super().start()  # type: ignore[misc]
        self._httpd.socket.listen(BACKLOG)
        return started


class RelayElevenLabs(LongBacklog, BenchElevenLabs):
    """bench.harness's fake ElevenLabs, taking many new connections at once."""


def first_sentence_seconds() -> float:
    """How long the fake model takes from its first chunk to the end of the reply's first
    sentence, as the server's sentence splitter sees it: what `<Gather>` waits for before
    voicing the first line, beyond the first-token delay."""
    text, splitter = reply_text(0), SentenceSplitter()
    for index in range(0, len(text), CHUNK_CHARS):
        if splitter.feed(text[index : index + CHUNK_CHARS]):
            return (index // CHUNK_CHARS + 1) * TOKEN_SECONDS  # after the role's event
    return (len(text) // CHUNK_CHARS + 1) * TOKEN_SECONDS


@contextmanager
def fakes() -> Iterator[None]:
    """The fake model (on an event loop: bench/relay_model.py) and speech service, each in
    a process of its own."""
    with (
        relay_model.serving(RelayOpenAI) as model_url,
        turns._serving(RelayElevenLabs, separate=True, delay=SPEECH_FIRST_BYTE) as speech_url,
        override_settings(
            OPENAI_BASE_URL=f"{model_url}/v1",
            OPENAI_API_KEY="bench-key",
            MODEL_TIMEOUT=5.0,
            ELEVENLABS_BASE_URL=speech_url,
            ELEVENLABS_API_KEY="bench-key",
        ),
    ):
        yield


def run() -> list[Figure]:
    gather_campaign, relay_campaign = _campaigns()
    with fakes():
        steps, load = ramp(relay_campaign)
        gather = gather_waits(gather_campaign)
    return ramp_figures(steps, load) + comparison(gather, steps, load)


def _campaigns() -> tuple[Any, Any]:
    """Two campaigns of one AI script: one over `<Gather>`, one over the relay."""
    from campaigns.models import Campaign, ConversationTransport, Partner
    from templates.models import CallTemplate
    from voices.services import sync_voices

    with fake_elevenlabs():
        sync_voices()
    partner = Partner.objects.create(name="Bench Relay", **TRUSTED_LIMITS)
    template = CallTemplate.objects.create(
        partner=partner,
        name="AI relay",
        greeting="Hola {{ first_name }}, le llamamos de {{ partner }}. Soy un asistente.",
        instructions="Confirma la cita.",
        variables={"first_name": "Ana"},
    )
    return (
        Campaign.objects.create(partner=partner, name="Gather", template=template),
        Campaign.objects.create(
            partner=partner,
            name="Relay",
            template=template,
            transport=ConversationTransport.RELAY,
        ),
    )


def gather_waits(campaign: Any) -> turns.Load:
    """bench/turns.py's callers over the turn webhook, on the same fake model: the web
    service warmed up as there, then COMPARE_CALLS calls."""
    calls = turns._live_calls(campaign, COMPARE_CALLS)
    warm_up = turns._live_calls(campaign, turns.WARM_UP_CALLS)
    with turns.web_server(log_name="relay-gather-server.log", ELEVENLABS_CONCURRENCY="0") as (
        url,
        _pid,
    ):
        asyncio.run(turns._load(url, warm_up, steady_seconds=0))
        turns._no_collector_pauses()
        return asyncio.run(turns._load(url, calls))


# --- Figures ------------------------------------------------------------------------------


def _held(steps: list[Step], load: RelayLoad) -> tuple[Step | None, str]:
    """The largest step held (p95 under the target, no error, every step before it held
    too), and why the ramp went no further."""
    held = None
    for step in steps:
        p95, errors = percentile(added_ms(load, step), 0.95), step.errors(load, until=step.end)
        if p95 >= HOLD_TARGET_MS:
            return held, f"@{step.calls}: p95 {p95:.1f} ms"
        if errors:
            return held, f"@{step.calls}: " + ", ".join(
                f"{count} {kind}" for kind, count in errors.most_common()
            )
        held = step
    if steps and steps[-1].calls == STEPS[-1]:
        return held, f"the last step ({STEPS[-1]}) held"
    return held, "the time bound stopped the ramp"


def ramp_figures(steps: list[Step], load: RelayLoad) -> list[Figure]:
    figures = []
    for step in steps:
        added, server = added_ms(load, step), server_added_ms(step)
        count, errors = turns_in(load, step), step.errors(load, until=step.end)
        lag = in_window(load.lag, step.start, step.end)
        target = f"target < {ADDED_TARGET_MS:g}" if step.calls == MEASURED_AT else ""
        name = f"relay added delay @{step.calls} calls"
        figures += [
            Figure(
                f"{name}: p50",
                round(percentile(added, 0.5), 1),
                "ms",
                f"{count} turns, first token less the model's "
                f"{FIRST_TOKEN_SECONDS * 1000:.0f} ms, as Twilio sees it",
            ),
            Figure(f"{name}: p95", round(percentile(added, 0.95), 1), "ms", target),
            Figure(f"{name}: p99", round(percentile(added, 0.99), 1), "ms"),
            Figure(
                f"{name}: p95 (server-side)",
                round(percentile(server, 0.95), 1),
                "ms",
                f"Turn.response_ms of {len(server)} turns, less the model's first token",
            ),
            Figure(
                f"relay errors @{step.calls} calls",
                sum(errors.values()),
                "count",
                ", ".join(f"{n} {kind}" for kind, n in errors.most_common()) or "must be 0",
            ),
            Figure(
                f"relay server CPU per turn @{step.calls} calls",
                round(step.cpu_seconds * 1000 / max(1, count), 2),
                "ms",
                "the web service's user+system time over the window",
            ),
            Figure(
                f"relay load generator lag @{step.calls} calls: p95",
                round(percentile(lag, 0.95) * 1000, 1),
                "ms",
                "its event loop's own delay, part of what it reads",
            ),
        ]
    held, why = _held(steps, load)
    figures.append(
        Figure(
            "relay calls held (p95 < 50 ms, no errors)",
            held.calls if held else 0,
            "calls",
            f"target >= {HELD_TARGET:,}; then {why}",
        )
    )
    # At the most calls held, or (none held) at the most the ramp opened.
    if (largest := held or (steps[-1] if steps else None)) is not None:
        per_call = (largest.rss_bytes - largest.idle_rss_bytes) / max(1, largest.open_calls)
        figures.append(
            Figure(
                f"relay memory per live call @{largest.calls} calls",
                round(per_call / 1024, 1),
                "KiB",
                f"web service RSS {largest.rss_bytes / 2**20:.0f} MiB with "
                f"{largest.open_calls} sockets open, {largest.idle_rss_bytes / 2**20:.0f} MiB idle",
            )
        )
    return figures


def comparison(gather: turns.Load, steps: list[Step], load: RelayLoad) -> list[Figure]:
    """The caller's wait for the first word of a reply over `<Gather>` and over the relay,
    each less its own vendors' fixed delays; printed side by side, and as figures."""
    gather_fixed = MODEL_FIRST_EVENT + first_sentence_seconds() + SPEECH_FIRST_BYTE
    gather_ms = [max(0.0, (wait - gather_fixed) * 1000) for wait in gather.turns]
    compared = next((step for step in steps if step.calls == COMPARE_CALLS), None)
    relay_ms = added_ms(load, compared) if compared else []
    rows = [
        ("turns measured", len(gather_ms), len(relay_ms)),
        (
            "errors",
            gather.turn_errors,
            sum(compared.errors(load, until=compared.end).values()) if compared else 0,
        ),
        (
            "vendors' fixed delays taken out (ms)",
            round(gather_fixed * 1000),
            round(FIRST_TOKEN_SECONDS * 1000),
        ),
        *(
            (
                f"our overhead p{share} (ms)",
                *(_ms(values, share) for values in (gather_ms, relay_ms)),
            )
            for share in (50, 95, 99)
        ),
        *(
            (
                f"caller's wait p{share} (ms)",
                _ms([value + gather_fixed * 1000 for value in gather_ms], share),
                _ms([value + FIRST_TOKEN_SECONDS * 1000 for value in relay_ms], share),
            )
            for share in (50, 95)
        ),
    ]
    print(f"\n<Gather> against the relay, {COMPARE_CALLS} calls, the same callers:")
    print(f"{'':<38} {'<Gather>':>10} {'relay':>10}")
    for label, left, right in rows:
        print(f"{label:<38} {left:>10,} {right:>10,}")
    gather_p95, relay_p95 = _ms(gather_ms, 95), _ms(relay_ms, 95)
    note = (
        f"<Gather> less {gather_fixed * 1000:.0f} ms (model's first token, its first "
        f"sentence written, speech's first byte), relay less {FIRST_TOKEN_SECONDS * 1000:.0f} ms"
    )
    return [
        Figure(
            f"gather vs relay @{COMPARE_CALLS} calls: gather overhead p50",
            _ms(gather_ms, 50),
            "ms",
            note,
        ),
        Figure(
            f"gather vs relay @{COMPARE_CALLS} calls: relay overhead p50", _ms(relay_ms, 50), "ms"
        ),
        Figure(f"gather vs relay @{COMPARE_CALLS} calls: gather overhead p95", gather_p95, "ms"),
        Figure(f"gather vs relay @{COMPARE_CALLS} calls: relay overhead p95", relay_p95, "ms"),
        Figure(
            f"gather vs relay @{COMPARE_CALLS} calls: relay / gather overhead p95",
            round(relay_p95 / gather_p95, 3) if gather_p95 else 0.0,
            "ratio",
        ),
        Figure(
            f"gather vs relay @{COMPARE_CALLS} calls: relay / gather caller's wait p50",
            round(
                (_ms(relay_ms, 50) + FIRST_TOKEN_SECONDS * 1000)
                / max(1.0, _ms(gather_ms, 50) + gather_fixed * 1000),
                3,
            ),
            "ratio",
            "the wait for the first word, vendors' delays included",
        ),
    ]


def _ms(values: list[float], share: int) -> float:
    return round(percentile(values, share / 100), 1)
