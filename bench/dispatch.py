"""Dispatch: CPU per call placed, achieved vs configured calls per second, and duplicates
when four dispatchers race over one campaign.

CPU per call placed is this process's CPU (not the database's) for the two steps of a
call: the dispatcher turning 100,000 contacts into pending calls, and the dialer placing
them (``place_call``: claim, eligibility again, the carrier's request) with the built-in
sandbox carrier, on a sample of DIAL_SAMPLE of them (each is a few queries and a queued
task; all 100,000 would take minutes and say nothing more).
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections
from django.db.models import Count
from django.test import override_settings

from bench.harness import Figure
from calls.dialing import Dialed, place_call
from calls.dispatcher import DISPATCH_INTERVAL_SECONDS, dispatch
from calls.models import Call
from campaigns.models import Campaign, Contact, Partner
from templates.models import CallTemplate
from tests.partners import TRUSTED_LIMITS

CONTACTS = 100_000
RATE_CPS = 5
RATE_SECONDS = 20
RACE_CONTACTS = 4_000
RACERS = 4
DIAL_SAMPLE = 2_000


def run() -> list[Figure]:
    return [*cpu_per_call(), *achieved_rate(), *racing_dispatchers()]


def make_campaign(name: str, *, contacts: int, cps: float) -> Campaign:
    # The partner may run every contact at once: the figures are the dispatcher's, not a cap's.
    limits = {**TRUSTED_LIMITS, "max_concurrent_calls_cap": max(contacts, 1)}
    partner = Partner.objects.create(name=f"Dispatch {name}", **limits)
    template = CallTemplate.objects.create(
        partner=partner,
        name="Bench",
        greeting="Hola. Le llama {{ partner }}, un asistente automático.",
        voicemail_message="Llámenos al 910 000 000.",
    )
    campaign = Campaign.objects.create(
        partner=partner,
        name=name,
        template=template,
        state=Campaign.State.RUNNING,
        compliance_profile=Campaign.ComplianceProfile.NONE,
        caller_number="+34910000000",
        max_concurrent_calls=contacts,
        calls_per_second=cps,
    )
    for start in range(0, contacts, 10_000):
        Contact.objects.bulk_create(
            Contact(campaign=campaign, phone=f"+3491{index:07d}", time_zone="Europe/Madrid")
            for index in range(start, min(contacts, start + 10_000))
        )
    return campaign


def cpu_per_call() -> list[Figure]:
    campaign = make_campaign("cpu", contacts=CONTACTS, cps=999)
    created = 0
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    # The account's bucket is made too large to matter; the campaign's refills at its
    # highest rate, so ticks follow each other as fast as the dispatcher can go.
    with override_settings(TWILIO_MAX_CPS=1_000_000):
        while created < CONTACTS:
            batch = len(dispatch().created)
            if not batch:
                time.sleep(0.05)  # the campaign's bucket is refilling
            created += batch
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    dial_cpu, dial_wall, placed = dial_sample(campaign)
    return [
        Figure("dispatch.calls_created", created, "calls", f"of {CONTACTS:,} contacts"),
        Figure(
            "dispatch.dispatch_cpu_per_call_ms",
            round(cpu / created * 1000, 3),
            "ms",
            "contact -> pending call, target < 1",
        ),
        Figure(
            "dispatch.dispatch_wall_per_call_ms",
            round(wall / created * 1000, 3),
            "ms",
            "incl. database",
        ),
        Figure("dispatch.dial_sample_placed", placed, "calls", f"of {DIAL_SAMPLE:,} dialled"),
        Figure(
            "dispatch.dial_cpu_per_call_ms",
            round(dial_cpu * 1000, 3),
            "ms",
            "pending -> placed (sandbox)",
        ),
        Figure(
            "dispatch.dial_wall_per_call_ms", round(dial_wall * 1000, 3), "ms", "incl. database"
        ),
        Figure(
            "dispatch.cpu_per_call_placed_ms",
            round((cpu / created + dial_cpu) * 1000, 3),
            "ms",
            "dispatch + dial, CPU of this process",
        ),
    ]


def dial_sample(campaign: Campaign) -> tuple[float, float, int]:
    """Place DIAL_SAMPLE of the campaign's pending calls with the sandbox carrier, as
    ``place_call_task`` does; returns CPU and wall seconds per call, and how many were
    placed (every one should be)."""
    ids = list(
        Call.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("pk", flat=True)[:DIAL_SAMPLE]
    )
    placed = 0
    # Its "placed" log line per call would bury the table (its cost is left out).
    logger = logging.getLogger("calls.dialing")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with override_settings(TELEPHONY_BACKEND="sandbox"):
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            for call_id in ids:
                placed += place_call(call_id=call_id) == Dialed.PLACED
            cpu = time.process_time() - cpu_started
            wall = time.perf_counter() - wall_started
    finally:
        logger.setLevel(level)
    return cpu / len(ids), wall / len(ids), placed


def achieved_rate() -> list[Figure]:
    make_campaign("rate", contacts=RATE_SECONDS * RATE_CPS * 3, cps=RATE_CPS)
    ticks: list[tuple[float, int]] = []
    with override_settings(TWILIO_MAX_CPS=RATE_CPS * 10):
        started = time.perf_counter()
        # Tick as beat does, on a fixed schedule, for RATE_SECONDS of real time.
        for tick in range(int(RATE_SECONDS / DISPATCH_INTERVAL_SECONDS) + 1):
            time.sleep(max(0.0, started + tick * DISPATCH_INTERVAL_SECONDS - time.perf_counter()))
            ticks.append((time.perf_counter(), len(dispatch().created)))
    # A new bucket starts full: the first tick takes one interval's worth at once. The
    # rate is what the following ticks achieved over the time since that first one.
    steady = sum(count for _, count in ticks[1:]) / (ticks[-1][0] - ticks[0][0])
    return [
        Figure("dispatch.configured_cps", RATE_CPS, "calls/s", "campaign calls_per_second"),
        Figure("dispatch.first_tick_calls", ticks[0][1], "calls", "a full bucket at start"),
        Figure(
            "dispatch.achieved_cps",
            round(steady, 3),
            "calls/s",
            f"after the first tick, {len(ticks) - 1} ticks",
        ),
        Figure("dispatch.achieved_over_configured", round(steady / RATE_CPS, 3), "ratio", "<= 1"),
    ]


def racing_dispatchers() -> list[Figure]:
    # Ticks of a few hundred calls, as real campaigns have: on SQLite, four dispatchers
    # holding its one write lock for thousands of rows at a time would time each other out.
    campaign = make_campaign("race", contacts=RACE_CONTACTS, cps=200)
    barrier = threading.Barrier(RACERS)

    def racer() -> None:
        try:
            barrier.wait()
            deadline = time.perf_counter() + 120
            while Contact.objects.filter(campaign=campaign, state="pending").exists():
                dispatch()
                if time.perf_counter() > deadline:
                    break
        finally:
            connections.close_all()

    with override_settings(TWILIO_MAX_CPS=1_000_000):
        threads = [threading.Thread(target=racer) for _ in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    calls = Call.objects.filter(campaign=campaign)
    duplicates = calls.values("contact").annotate(n=Count("pk")).filter(n__gt=1).count()
    return [
        Figure("dispatch.race.calls", calls.count(), "calls", f"{RACERS} dispatchers"),
        Figure("dispatch.race.duplicates", duplicates, "contacts", "must be 0"),
    ]
