"""Voicing lines ahead: common sentences at start, contact sentences for the next contacts."""

from __future__ import annotations

import pytest
from django.utils import translation

from campaigns.prerendering import (
    prerender_campaign_speech,
    prerender_contact_speech,
    prerender_upcoming_speech,
)
from campaigns.tasks import prerender_campaign_speech_task, prerender_upcoming_speech_task
from templates.linting import lint_template
from tests.factories import ContactFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def bella() -> Voice:
    return VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")


def spoken(fake) -> list[str]:
    return [request.json["text"] for request in fake.requests_to("/v1/text-to-speech")]


def test_fixture_template_is_valid_and_passes_lint(call_template) -> None:
    call_template.full_clean()
    assert lint_template(template=call_template) == []


def test_prerender_campaign_speech_voices_common_sentences_once(
    fake_elevenlabs, bella, campaign
) -> None:
    result = prerender_campaign_speech(campaign=campaign)
    again = prerender_campaign_speech(campaign=campaign)

    # "Le llamamos de Acme." is in the greeting and the voicemail: voiced once
    assert spoken(fake_elevenlabs) == [
        "Le llamamos de Acme.",
        "Soy un asistente automático.",
        "Llámenos al 910 000 000.",
        "Gracias, adiós.",
    ]
    assert (result.ready, result.failed) == (4, 0)
    assert again.ready == 4
    assert SpeechClip.objects.filter(status="ready").count() == 4


def test_prerender_contact_speech_voices_each_distinct_value_once(
    fake_elevenlabs, bella, campaign
) -> None:
    contacts = [
        ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"}),
        ContactFactory(campaign=campaign, phone="+34600000002", variables={"first_name": "Ana"}),
        ContactFactory(campaign=campaign, phone="+34600000003", variables={"first_name": "Luis"}),
        ContactFactory(campaign=campaign, phone="+34600000004", variables={}),
    ]

    with translation.override("en"):
        result = prerender_contact_speech(campaign=campaign, contacts=contacts)

    assert spoken(fake_elevenlabs) == ["Hola Ana.", "Hola Luis."]
    assert result.ready == 3
    assert result.skipped == {contacts[3].pk: "missing variable first_name"}


def test_prerender_upcoming_speech_takes_only_due_contacts(
    fake_elevenlabs, bella, campaign
) -> None:
    ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})
    ContactFactory(
        campaign=campaign, phone="+34600000002", variables={"first_name": "Eva"}, state="done"
    )

    prerender_upcoming_speech(campaign=campaign)

    assert spoken(fake_elevenlabs) == ["Hola Ana."]


def test_prerender_without_key_or_voice_does_nothing(settings, campaign, bella) -> None:
    settings.ELEVENLABS_API_KEY = ""

    assert prerender_campaign_speech(campaign=campaign).ready == 0
    assert SpeechClip.objects.count() == 0


def test_prerender_failures_are_counted_and_leave_the_line_to_say(
    fake_elevenlabs, bella, campaign
) -> None:
    fake_elevenlabs.fail_next(400, times=10)

    result = prerender_campaign_speech(campaign=campaign)

    assert result.failed == 4 and result.ready == 0


def test_prerender_campaign_speech_task_reports_counts(fake_elevenlabs, bella, campaign) -> None:
    assert prerender_campaign_speech_task(campaign.pk) == {"ready": 4, "failed": 0}


def test_prerender_upcoming_speech_task_covers_running_campaigns_only(
    fake_elevenlabs, bella, campaign, partner, call_template
) -> None:
    ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})
    campaign.state = "running"
    campaign.save(update_fields=["state"])
    draft = campaign.__class__.objects.create(partner=partner, name="Draft", template=call_template)
    ContactFactory(campaign=draft, phone="+34600000002", variables={"first_name": "Eva"})

    totals = prerender_upcoming_speech_task()

    assert spoken(fake_elevenlabs) == ["Hola Ana."]
    assert totals == {"ready": 1, "failed": 0, "skipped": 0}
