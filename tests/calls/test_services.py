from __future__ import annotations

import pytest

from calls.models import Call
from calls.services import speech_for_call
from campaigns.models import Contact
from templates.models import CallTemplate
from tests.fakes.elevenlabs import ANTONI_ID, BELLA_ID
from voices.models import Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(campaign) -> Call:
    campaign.template = CallTemplate.objects.create(
        partner=campaign.partner, name="T", greeting="Hola", language="es-ES"
    )
    campaign.save(update_fields=["template"])
    contact = Contact.objects.create(campaign=campaign, phone="+34600000001")
    return Call.objects.create(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status="in-progress",
        from_number="+34910000000",
        to_number=contact.phone,
    )


def test_speech_for_call_uses_the_campaign_voice(fake_elevenlabs, call) -> None:
    antoni = Voice.objects.create(provider_voice_id=ANTONI_ID, name="Antoni")
    Voice.objects.create(provider_voice_id=BELLA_ID, name="Bella")
    call.campaign.voice = antoni
    call.campaign.save(update_fields=["voice"])

    speech = speech_for_call(call=call, text="Hola, Ana.")

    assert not speech.is_fallback
    assert fake_elevenlabs.requests_to(f"/v1/text-to-speech/{ANTONI_ID}")
    call.refresh_from_db()
    assert call.speech_fallbacks == 0


def test_speech_for_call_uses_the_default_voice_when_campaign_has_none(
    fake_elevenlabs, call
) -> None:
    Voice.objects.create(provider_voice_id=BELLA_ID, name="Bella")

    speech_for_call(call=call, text="Hola.")

    assert fake_elevenlabs.requests_to(f"/v1/text-to-speech/{BELLA_ID}")


def test_speech_for_call_counts_fallbacks_on_the_call(fake_elevenlabs, call) -> None:
    Voice.objects.create(provider_voice_id=BELLA_ID, name="Bella")
    fake_elevenlabs.fail_next(503, times=20)

    first = speech_for_call(call=call, text="Hola.")
    second = speech_for_call(call=call, text="Adiós.")

    assert first.is_fallback and second.is_fallback
    assert first.language == "es-ES"
    call.refresh_from_db()
    assert call.speech_fallbacks == 2
