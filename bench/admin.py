"""The staff console's home page and lists over 100,000 calls: how long a page takes to
load (median and p95 of repeated loads by a superuser through django.test.Client, the
whole request: middleware, queries and template) and how many queries it reads. The home
page (the operations overview) is loaded with the ten campaigns running; the call list
unfiltered, filtered, searched and drilled down to a day; the contact list (as many
contacts) unfiltered and searched.

The calls are spread over 90 days, one contact each, in ten campaigns, with the statuses,
answers and outcomes of real campaigns. BENCH_ADMIN_CALLS makes them fewer for a quick run.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from bench.harness import Figure
from calls.models import AnsweredBy, Call, CallStatus, Turn, TurnRole
from campaigns.models import Campaign, Contact, Partner
from templates.models import CallTemplate
from tests.partners import TRUSTED_LIMITS

CALLS = int(os.environ.get("BENCH_ADMIN_CALLS", "100000"))
CAMPAIGNS = 10
DAYS = 90
LOADS = 30


def run() -> list[Figure]:
    partner, day = make_calls()
    # The home page lists running campaigns with their progress: these ten.
    Campaign.objects.filter(partner=partner).update(state=Campaign.State.RUNNING)
    client = Client()
    client.force_login(
        get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    )
    calls = reverse("admin:calls_call_changelist")
    contacts = reverse("admin:campaigns_contact_changelist")
    number = f"600{CALLS // 2:06d}"
    pages = {
        "home": reverse("admin:index"),
        "calls.list": calls,
        "calls.filtered": f"{calls}?status__exact=completed&outcome=opted_out",
        # A number as people type it, and the start of a number.
        "calls.searched": f"{calls}?q={number[:3]}+{number[3:6]}+{number[6:]}",
        "calls.searched_start": f"{calls}?q=%2B34{number[:6]}",
        "calls.day": (
            f"{calls}?created_at__year={day.year}&created_at__month={day.month}"
            f"&created_at__day={day.day}"
        ),
        "contacts.list": contacts,
        "contacts.searched": f"{contacts}?q=%2B34{number}",
    }
    figures = []
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for name, url in pages.items():
            # The home page's rows are its campaigns; the lists' are selectable rows.
            marker = "data-campaign=" if name == "home" else 'name="_selected_action"'
            figures += measure(client, name, url, marker=marker)
    return figures


# What is said in a call answered by a person: (role, text) by turn.
CONVERSATION = [
    (TurnRole.AGENT, "Hola. Le llama la clínica, un asistente automático. ¿Habla con Ana?"),
    (TurnRole.CALLER, "Sí, soy yo."),
    (TurnRole.AGENT, "Le llamo para confirmar su cita del martes a las diez. ¿Podrá venir?"),
    (TurnRole.CALLER, "Sí, allí estaré."),
    (TurnRole.AGENT, "Perfecto, queda confirmada. Gracias y hasta pronto."),
]


def make_calls(
    *,
    calls: int = CALLS,
    campaigns: int = CAMPAIGNS,
    name: str = "Admin bench",
    with_turns: bool = False,
) -> tuple[Partner, datetime.date]:
    """``calls`` calls of one new partner, one contact each, the newest today, in
    ``campaigns`` campaigns; with ``with_turns`` the calls answered by a person have a
    conversation's turns. Returns the partner and a day with calls."""
    partner = Partner.objects.create(name=name, **TRUSTED_LIMITS)
    template = CallTemplate.objects.create(
        partner=partner,
        name="Bench",
        greeting="Hola. Le llama {{ partner }}, un asistente automático.",
        voicemail_message="Llámenos al 910 000 000.",
    )
    campaign_list = [
        Campaign.objects.create(partner=partner, name=f"Campaign {n}", template=template)
        for n in range(campaigns)
    ]
    # (status, answered_by, outcome) in the shares a finished campaign has them.
    kinds = [
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, {"attending": True}),
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, {"attending": False}),
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, {"opted_out": True}),
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, {"callback_at": "2026-12-01T10:00:00Z"}),
        (CallStatus.COMPLETED, AnsweredBy.MACHINE_END_BEEP, {}),
        (CallStatus.NO_ANSWER, "", {}),
        (CallStatus.NO_ANSWER, "", {}),
        (CallStatus.BUSY, "", {}),
        (CallStatus.FAILED, "", {}),
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, {"transferred": True}),
    ]
    now = timezone.now()
    for day in range(DAYS):
        indexes = range(day * calls // DAYS, (day + 1) * calls // DAYS)
        contacts = Contact.objects.bulk_create(
            Contact(
                campaign=campaign_list[index % campaigns],
                phone=f"+34600{index:06d}",
                state=Contact.State.DONE,
                attempts=1,
            )
            for index in indexes
        )
        created = Call.objects.bulk_create(
            Call(
                campaign=contact.campaign,
                contact=contact,
                attempt=1,
                from_number="+34910000000",
                to_number=contact.phone,
                status=kinds[index % len(kinds)][0],
                answered_by=kinds[index % len(kinds)][1],
                outcome=kinds[index % len(kinds)][2],
                provider_sid=f"CA{partner.pk:08d}{index:024d}",  # unique across runs
                duration_seconds=40,
            )
            for index, contact in zip(indexes, contacts, strict=True)
        )
        # created_at is set on insert: each day's calls are then moved to it, oldest first.
        moment = now - datetime.timedelta(days=DAYS - 1 - day)
        Call.objects.filter(pk__in=[call.pk for call in created]).update(created_at=moment)
        if with_turns:
            Turn.objects.bulk_create(
                Turn(
                    call=call,
                    sequence=sequence,
                    role=role,
                    text=text,
                    started_at=moment + datetime.timedelta(seconds=6 * sequence),
                    ended_at=moment + datetime.timedelta(seconds=6 * sequence + 4),
                    latency_ms=700 if role == TurnRole.AGENT else None,
                )
                for call in created
                if call.answered_by == AnsweredBy.HUMAN
                for sequence, (role, text) in enumerate(CONVERSATION)
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE calls_call, calls_turn, campaigns_contact, campaigns_campaign")
    return partner, timezone.localdate(now - datetime.timedelta(days=DAYS // 2))


def measure(
    client: Client, name: str, url: str, *, marker: str = 'name="_selected_action"'
) -> list[Figure]:
    queries = []

    def counted(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counted):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    rows = response.content.decode().count(marker)
    seconds = []
    for _ in range(LOADS):
        started = time.perf_counter()
        client.get(url)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    p95 = seconds[min(len(seconds) - 1, round(0.95 * len(seconds)) - 1)]
    note = f"{rows} rows shown, {LOADS} loads"
    return [
        Figure(f"admin.{name}.median_ms", round(statistics.median(seconds) * 1000, 1), "ms", note),
        Figure(f"admin.{name}.p95_ms", round(p95 * 1000, 1), "ms", f"of {CALLS:,} calls"),
        Figure(f"admin.{name}.queries", len(queries), "queries", "per load"),
    ]
