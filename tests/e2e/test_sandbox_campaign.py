"""The whole product at once: a 20-contact campaign through the sandbox carrier.

The real web server (uvicorn), a real Celery worker and beat run as processes on
PostgreSQL and Redis, as in production; the sandbox carrier plays every call through
the web server's webhooks, signed. Each contact must end as its persona says.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils import translation

from calls.management.commands.seed_demo import GREETING, SCRIPTED_STEPS, TEMPLATE_TEXTS
from calls.models import Call, Turn
from campaigns.models import Campaign, ComplianceProfile, Contact, DoNotCall
from campaigns.services import CampaignStateError, add_contact, start_campaign
from templates.models import CallTemplate
from tests.factories import CampaignFactory, PartnerFactory
from tests.processes import other_redis_database, running_system

PERSONAS = [
    "interested",
    "not_interested",
    "callback",
    "opt_out",
    "voicemail",
    "busy",
    "no_answer",
    "silent",
    "invalid_number",
]
CONTACTS = 20
DEADLINE_SECONDS = 240

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
        reason="runs on PostgreSQL and Redis, as in production (.ci/run starts them)",
    ),
]


@pytest.fixture
def system(tmp_path) -> Iterator[str]:
    """Web, worker and beat on the test database; yields the web server's URL."""
    with running_system(
        tmp_path,
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        TELEPHONY_BACKEND="sandbox",
        SANDBOX_SPEED="40",
        TWILIO_MAX_CPS="10",
    ) as url:
        yield url


def make_campaign() -> Campaign:
    partner = PartnerFactory(name="Clínica Demo", trusted=True)
    template = CallTemplate.objects.create(
        partner=partner,
        name="Guion",
        mode=CallTemplate.Mode.SCRIPTED,
        greeting=GREETING,
        steps=SCRIPTED_STEPS,
        **TEMPLATE_TEXTS,
    )
    campaign = CampaignFactory(
        partner=partner,
        name="E2E",
        template=template,
        caller_number="+34910000000",
        compliance_profile=ComplianceProfile.NONE,
        max_concurrent_calls=10,
        calls_per_second=10,
        max_attempts=1,
    )
    for index in range(CONTACTS):
        add_contact(
            campaign=campaign,
            phone=f"+346100000{index:02d}",
            variables={
                "first_name": f"Persona {index}",
                "appointment": "el martes a las 10:00",
                "sandbox_persona": PERSONAS[index % len(PERSONAS)],
            },
        )
    return campaign


def settled(campaign: Campaign) -> bool:
    waiting = campaign.contacts.filter(
        state__in=[Contact.State.PENDING, Contact.State.CALLING]
    ).exists()
    return not waiting and not Call.objects.live().filter(campaign=campaign).exists()


def test_a_campaign_runs_through_the_sandbox_carrier_to_each_personas_end(system) -> None:
    campaign = make_campaign()
    start_campaign(campaign=campaign)

    deadline = time.monotonic() + DEADLINE_SECONDS
    while not settled(campaign) and time.monotonic() < deadline:
        time.sleep(1)
    assert settled(campaign), list(campaign.contacts.values_list("state", flat=True))

    expected = {
        "interested": (Contact.State.DONE, {"attending": True}),
        "not_interested": (Contact.State.DONE, {"attending": False}),
        "callback": (Contact.State.RETRY, {"attending": False, "callback": True}),
        "opt_out": (Contact.State.OPTED_OUT, {"opted_out": True}),
        "voicemail": (Contact.State.EXHAUSTED, {}),
        "busy": (Contact.State.EXHAUSTED, {}),
        "no_answer": (Contact.State.EXHAUSTED, {}),
        "silent": (Contact.State.EXHAUSTED, {}),
        "invalid_number": (Contact.State.FAILED, {}),
    }
    for contact in campaign.contacts.all():
        persona = contact.variables["sandbox_persona"]
        state, outcome = expected[persona]
        calls = list(contact.calls.all())
        assert contact.state == state, (persona, contact.state, contact.state_reason)
        assert len(calls) == 1, persona  # max_attempts=1: nobody is called twice
        [call] = calls
        assert call.outcome == outcome, persona
        if persona in ("interested", "not_interested", "callback", "opt_out"):
            roles = list(call.turns.values_list("role", flat=True))
            assert roles[:2] == [Turn.Role.AGENT, Turn.Role.CALLER], persona
            assert call.answered_by == "human"
        if persona == "voicemail":
            assert call.answered_by.startswith("machine")
            assert call.turns.last().text.startswith("Hola, le llamamos de Clínica Demo")
        if persona == "invalid_number":
            assert (call.status, call.error_code) == ("failed", 21211)
        if persona in ("busy", "no_answer"):
            assert call.status == persona.replace("_", "-")
    opted_out = campaign.contacts.filter(variables__sandbox_persona="opt_out")
    for contact in opted_out:
        assert DoNotCall.objects.filter(partner=campaign.partner, phone=contact.phone).exists()
    # An opted-out number is never dialled again, by this campaign or another.
    again = CampaignFactory(
        partner=campaign.partner,
        name="Again",
        template=campaign.template,
        caller_number="+34910000000",
        compliance_profile=ComplianceProfile.NONE,
    )
    phone = opted_out.first().phone
    add_contact(campaign=again, phone=phone, variables=opted_out.first().variables)
    # Alone, it does not even let the campaign start: nobody waiting could be called.
    with translation.override("en"), pytest.raises(CampaignStateError) as refusal:
        start_campaign(campaign=again)
    assert "1 is on a do-not-call list" in str(refusal.value)
    # With someone else to call, the campaign starts, and the dispatcher skips the number.
    add_contact(
        campaign=again,
        phone=f"+346100000{CONTACTS:02d}",
        variables={**opted_out.first().variables, "sandbox_persona": "no_answer"},
    )
    start_campaign(campaign=again)
    deadline = time.monotonic() + 20
    while (
        again.contacts.get(phone=phone).state == Contact.State.PENDING
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    contact = again.contacts.get(phone=phone)
    assert contact.state == Contact.State.FAILED
    assert "do-not-call" in contact.state_reason or "exclusión" in contact.state_reason
    assert Call.objects.filter(to_number=phone).count() == 1
