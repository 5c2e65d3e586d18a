"""Fault suite, provider faults: Twilio answers one request in five with a 500, a 429 or
a timeout, the model hangs past its timeout, the speech service fails half its lines.
Every contact still ends in a defined state, none is stuck, nobody is dialled behind the
product's back, and the callee always hears something.

The product runs as processes (web, two workers, beat) on PostgreSQL and a Redis of the
test's own; the fakes run in the test's process, and a carrier plays each call Twilio
created through the webhooks, speaking two lines on each answered call.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from calls.models import Call, Turn
from campaigns.models import Contact
from campaigns.services import start_campaign
from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.reliability import faults
from tests.reliability.campaign_runs import (
    at_rest,
    make_campaign,
    product_env,
    reconcile,
    use_twilio,
)
from tests.reliability.carrier import (
    ANSWERED,
    BUSY,
    NO_ANSWER,
    Carrier,
    ScriptedTwilio,
    twilio_faults,
)
from tests.reliability.conftest import needs_postgresql_and_redis
from tests.reliability.faults import FaultyElevenLabs, FaultyOpenAI
from tests.reliability.servers import RedisServer
from tests.reliability.system import ProductSystem

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgresql_and_redis, pytest.mark.slow]

DEADLINE_SECONDS = 150
OUTCOMES = {
    **{f"+346200000{index:02d}": ANSWERED for index in range(8)},
    **{f"+346210000{index:02d}": BUSY for index in range(3)},
    **{f"+346220000{index:02d}": NO_ANSWER for index in range(3)},
}
# Where each kind of contact may end: done with, or waiting for an attempt at a set time.
ENDS = {
    ANSWERED: {Contact.State.DONE, Contact.State.PENDING, Contact.State.RETRY},
    BUSY: {Contact.State.RETRY, Contact.State.PENDING},
    NO_ANSWER: {Contact.State.RETRY, Contact.State.PENDING},
}


def test_provider_faults_leave_every_contact_in_a_defined_state_and_no_callee_in_silence(
    tmp_path, settings
) -> None:
    # given: a campaign with a voice, and vendors failing on schedule
    campaign = make_campaign(OUTCOMES, max_concurrent_calls=6, calls_per_second=10)
    campaign.voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    campaign.save(update_fields=["voice"])
    twilio = ScriptedTwilio(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        fault_every=5,
        faults=twilio_faults(timeout_seconds=1.5),  # past TWILIO_TIMEOUT (1 s)
    )
    model = FaultyOpenAI(api_key="test-key", fault_every=3, faults=[faults.timeout(2.5)])
    voice = FaultyElevenLabs(
        api_key="test-key",
        fault_every=2,
        faults=[faults.error(500, {"detail": {"status": "error", "message": "Scripted."}})],
    )
    with twilio, model, voice, RedisServer(tmp_path) as redis:
        use_twilio(settings, twilio)
        env = product_env(
            redis,
            twilio,
            OPENAI_BASE_URL=f"{model.url}/v1",
            OPENAI_API_KEY="test-key",
            MODEL_TIMEOUT="1.0",
            ELEVENLABS_BASE_URL=voice.url,
            ELEVENLABS_API_KEY="test-key",
            ELEVENLABS_MAX_RETRIES="0",
            ELEVENLABS_TIMEOUT="1.0",
        )
        lines = ["Sí, allí estaré.", "¿Puedo llevar a mi hija?"]
        with (
            ProductSystem(tmp_path, env=env, workers=2, beats=1, threads=6) as system,
            Carrier(twilio, outcome=OUTCOMES.get, lines=lines) as carrier,
        ):
            # when the campaign runs, reconciliation ticking as it does
            start_campaign(campaign=campaign)
            deadline = time.monotonic() + DEADLINE_SECONDS
            while time.monotonic() < deadline:
                reconcile(system)
                if at_rest(campaign, carrier):
                    break
                time.sleep(1)

            # then nothing more is going on: every contact ended, or waits for a set time
            assert at_rest(campaign, carrier), contact_states(campaign)
    now = timezone.now()
    for contact in campaign.contacts.all():
        outcome = OUTCOMES[contact.phone]
        assert contact.state in ENDS[outcome], (outcome, contact.state, contact.state_reason)
        assert contact.state_reason, contact
        if contact.state in (Contact.State.PENDING, Contact.State.RETRY):
            assert contact.next_attempt_at > now, contact
    # the callee always heard something: no error, no silence, no <Play> of nothing
    assert carrier.problems == []
    # Twilio rang nobody the product does not know of, and nobody twice for one call
    sids = set(Call.objects.filter(campaign=campaign).values_list("provider_sid", flat=True))
    assert set(twilio.forms) <= sids
    # and the faults did happen, each of them
    assert {fault.split(":")[0] for fault in twilio.faults_played} >= {
        "HTTP 500",
        "HTTP 429",
        "1.5 s",
    }
    assert any("POST" in fault and "/Calls.json" in fault for fault in twilio.faults_played)
    assert model.faults_played and voice.faults_played
    assert Turn.objects.filter(call__campaign=campaign, text="Un momento, por favor.").exists()
    assert Call.objects.filter(campaign=campaign, speech_fallbacks__gt=0).exists()
    assert carrier.clips_played  # and rendered lines were played, where they rendered


def contact_states(campaign) -> list[tuple[str, str, str]]:
    return list(campaign.contacts.values_list("phone", "state", "state_reason"))
