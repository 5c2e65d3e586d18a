"""A relay campaign end to end: Twilio's ConversationRelay played by the sandbox carrier.

The real web server (uvicorn, serving the relay WebSocket through Channels), a Celery
worker and beat run on PostgreSQL and Redis; the sandbox carrier answers each call with
the campaign's <Connect><ConversationRelay>, opens the signed WebSocket and plays the
callee over it, as Twilio would. The model is the fake OpenAI, streamed token by token;
the partner's endpoint is a real receiver checking signatures.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from django.conf import settings

from calls.management.commands.seed_demo import GREETING, TEMPLATE_TEXTS
from calls.models import Call, Turn
from calls.telephony.sandbox.personas import REPLIES
from campaigns.models import (
    ComplianceProfile,
    Contact,
    ConversationTransport,
    DoNotCall,
    WebhookEvent,
)
from campaigns.services import add_contact, start_campaign
from templates.models import CallTemplate
from tests.factories import CampaignFactory, PartnerFactory, WebhookEndpointFactory
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.openai import FakeOpenAI
from tests.fakes.webhooks import FakeWebhookReceiver
from tests.processes import other_redis_database, running_system

PERSONAS = ["interested", "not_interested", "callback", "opt_out", "silent", "voicemail"]
# One more opt-out callee, whose greeting offers the key: it presses it (a dtmf message).
KEY_OFFER = f"Si no quiere más llamadas, pulse {settings.OPT_OUT_DIGIT}."
NO_OFFER = "Gracias por atendernos."
TALKERS = ("interested", "not_interested", "callback")
DEADLINE_SECONDS = 240
OUTCOME = '{"outcome": {"attending": true}, "summary": "Confirma que irá a su cita."}'
# Long enough (over 150 characters) that the callee may speak over it.
REPLY = (
    "De acuerdo, lo anoto ahora mismo en su ficha. Le recordamos que la cita es en la "
    "segunda planta de la clínica y que conviene llegar diez minutos antes. ¿Algo más?"
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
        reason="runs on PostgreSQL and Redis, as in production (.ci/run starts them)",
    ),
]


@pytest.fixture
def vendors() -> Iterator[tuple[FakeOpenAI, FakeElevenLabs]]:
    with (
        FakeOpenAI(api_key="e2e-openai", default_reply=REPLY, default_outcome=OUTCOME) as openai,
        FakeElevenLabs(api_key="e2e-elevenlabs") as elevenlabs,
    ):
        yield openai, elevenlabs


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def system(tmp_path, vendors) -> Iterator[str]:
    """Web, worker and beat on the test database; yields the web server's URL."""
    openai, elevenlabs = vendors
    with running_system(
        tmp_path,
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        TELEPHONY_BACKEND="sandbox",
        SANDBOX_SPEED="40",
        TWILIO_MAX_CPS="10",
        CALLCENTER_LOCAL_FAKES="1",
        OPENAI_API_KEY="e2e-openai",
        OPENAI_BASE_URL=f"{openai.url}/v1",
        ELEVENLABS_API_KEY="e2e-elevenlabs",
        ELEVENLABS_BASE_URL=elevenlabs.url,
        # Our goodbye needs no time to be heard, and a silence is one real second.
        RELAY_SPEECH_CHARS_PER_SECOND="0",
        RELAY_SILENCE_SECONDS="1",
    ) as url:
        yield url


def make_campaign(receiver: FakeWebhookReceiver):
    partner = PartnerFactory(name="Clínica Demo", trusted=True)
    template = CallTemplate.objects.create(
        partner=partner,
        name="Recordatorio",
        mode=CallTemplate.Mode.AI,
        greeting=GREETING + " {{ key_offer }} ¿Podrá venir?",
        instructions="Confirma si el paciente acudirá a su cita. Sé breve.",
        outcome_schema={"type": "object", "properties": {"attending": {"type": "boolean"}}},
        **{
            **TEMPLATE_TEXTS,
            "variables": {**TEMPLATE_TEXTS["variables"], "key_offer": KEY_OFFER},
        },
    )
    campaign = CampaignFactory(
        partner=partner,
        name="Relay",
        template=template,
        transport=ConversationTransport.RELAY,
        caller_number="+34910000000",
        compliance_profile=ComplianceProfile.NONE,
        max_concurrent_calls=10,
        calls_per_second=10,
        max_attempts=1,
    )
    endpoint = WebhookEndpointFactory(
        partner=partner, url=receiver.url, events=[WebhookEvent.CALL_COMPLETED]
    )
    receiver.secret = endpoint.secret
    for index, persona in enumerate([*PERSONAS, "opt_out"]):
        add_contact(
            campaign=campaign,
            phone=f"+346200000{index:02d}",
            variables={
                "first_name": f"Persona {index}",
                "appointment": "el martes a las 10:00",
                "sandbox_persona": persona,
                # A variable may not be empty: the others hear a courtesy instead.
                "key_offer": KEY_OFFER if index == len(PERSONAS) else NO_OFFER,
            },
        )
    return campaign


def settled(campaign) -> bool:
    waiting = campaign.contacts.filter(
        state__in=[Contact.State.PENDING, Contact.State.CALLING]
    ).exists()
    return not waiting and not Call.objects.live().filter(campaign=campaign).exists()


def told(receiver: FakeWebhookReceiver) -> dict[int, dict]:
    """The call.completed events the partner's endpoint got, well signed, by call."""
    return {
        request.json["data"]["call_id"]: request.json["data"]
        for request in receiver.requests
        if request.signature_ok and request.json["type"] == WebhookEvent.CALL_COMPLETED
    }


def test_a_relay_campaign_runs_through_the_sandbox_carriers_conversation_relay(
    system, receiver
) -> None:
    # given
    campaign = make_campaign(receiver)

    # when
    start_campaign(campaign=campaign)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not settled(campaign) and time.monotonic() < deadline:
        time.sleep(1)
    assert settled(campaign), list(campaign.contacts.values_list("state", "state_reason"))
    calls = Call.objects.filter(campaign=campaign)
    while len(told(receiver)) < calls.count() and time.monotonic() < deadline + 30:
        time.sleep(0.5)

    # then: each person talked over the relay, their words in the transcript
    for contact in campaign.contacts.all():
        persona = contact.variables["sandbox_persona"]
        assert contact.calls.count() == 1, (persona, contact.state, contact.state_reason)
        [call] = contact.calls.all()
        turns = list(call.turns.order_by("sequence"))
        caller = [turn.text for turn in turns if turn.role == Turn.Role.CALLER]
        if persona == "voicemail":
            assert call.answered_by.startswith("machine"), call.answered_by
            continue
        assert call.status == Call.Status.COMPLETED, (persona, call.status)
        assert call.transport == ConversationTransport.RELAY, persona
        assert call.answered_by == "human"
        assert turns[0].role == Turn.Role.AGENT and turns[0].text.startswith("Hola Persona")
        assert call.first_audio_ms is not None and call.first_audio_ms >= 0
        assert "relay_failed" not in call.flags, (persona, call.flags)
        if persona in TALKERS:
            # both lines said, in order (an interruption only shortens our reply)
            assert caller == list(REPLIES["es"][persona]), (persona, caller)
            # each answer to the caller's words has its response time
            answers = [
                turn
                for previous, turn in itertools.pairwise(turns)
                if previous.role == Turn.Role.CALLER and turn.role == Turn.Role.AGENT
            ]
            assert len(answers) == 2, (persona, [(t.role, t.text) for t in turns])
            assert all(turn.response_ms is not None for turn in answers), persona
            for turn in answers:
                assert REPLY.startswith(turn.text.strip()) or turn.interrupted, turn.text
            assert call.outcome == {"attending": True}, (persona, call.outcome)
            assert contact.state == Contact.State.DONE, (persona, contact.state_reason)
        if persona == "opt_out":
            # it says so, or presses the key when the greeting offers it
            pressed = [turn.digits for turn in turns if turn.role == Turn.Role.CALLER]
            if contact.variables["key_offer"] == KEY_OFFER:
                assert (caller, pressed) == ([""], [settings.OPT_OUT_DIGIT]), (caller, pressed)
            else:
                assert caller[0] == REPLIES["es"]["opt_out"][0]
            assert contact.state == Contact.State.OPTED_OUT
            assert DoNotCall.objects.filter(partner=campaign.partner, phone=contact.phone).exists()
        if persona == "silent":
            assert caller == []

    # and the partner was told of every call, once it was over
    events = told(receiver)
    for call in calls:
        assert call.pk in events, f"call {call.pk} was never told to the partner"
        assert events[call.pk]["status"] == call.status
