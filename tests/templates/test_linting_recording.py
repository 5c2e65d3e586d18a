"""The recording announcement lint: a campaign that records its calls needs a template
that says so, in its language, before recording starts; else the campaign cannot start."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import translation

from campaigns.models import Campaign
from campaigns.services import CampaignStateError, add_contact, start_campaign, start_problems
from templates.linting import announces_recording, recording_announcement, recording_problems
from templates.models import CallTemplate
from tests.factories import CallTemplateFactory, CampaignFactory

pytestmark = pytest.mark.django_db

GREETING = "Hola, le llama el asistente virtual de {{ partner }}."
STEPS = [
    {
        "id": "confirm",
        "prompt": "¿Vendrá a su cita? Diga sí o no.",
        "answers": [{"keywords": ["sí"], "next": "end"}],
    },
    {
        "id": "later",
        "prompt": "Esta llamada será grabada. ¿Algo más?",
        "answers": [{"keywords": ["no"], "next": "end"}],
    },
]


def template(partner, **fields: object) -> CallTemplate:
    defaults: dict[str, object] = {
        "name": "Cita",
        "language": "es-ES",
        "mode": CallTemplate.Mode.AI,
        "greeting": GREETING,
        "voicemail_message": "Llámenos al +34 910 000 000.",
    }
    return CallTemplate(partner=partner, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("es-ES", "Esta llamada será grabada."),
        ("es-ES", "Le informamos de que la conversación se graba."),
        ("es-MX", "Esta llamada está siendo GRABADA por calidad."),
        ("es-ES", "La grabacion de esta llamada se guarda 30 días."),
        ("en-US", "This call is recorded for quality."),
        ("en-GB", "We are recording this call."),
        ("ca-ES", "This call is being recorded."),  # no list of its own: any language's words
    ],
)
def test_announces_recording_finds_the_words_of_the_language(language, text) -> None:
    assert announces_recording(text, language=language)


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("es-ES", "This call is recorded."),  # English words in a Spanish call
        ("en-US", "Esta llamada será grabada."),
        ("es-ES", "Le llama el asistente virtual de Acme."),
        ("en-US", "We will call you back."),
        ("es-ES", "Programa de grabadoras"),  # a word that only begins alike
    ],
)
def test_announces_recording_refuses_other_languages_and_lookalikes(language, text) -> None:
    assert not announces_recording(text, language=language)


def test_a_campaign_that_does_not_record_needs_no_announcement(partner) -> None:
    assert recording_problems(template=template(partner), records=False) == []


def test_an_announcement_in_the_greeting_passes(partner) -> None:
    announced = template(partner, greeting=GREETING + " Esta llamada será grabada.")

    assert recording_announcement(announced) == "greeting"
    assert recording_problems(template=announced, records=True) == []


def test_an_english_template_announces_in_english(partner) -> None:
    announced = template(
        partner,
        language="en-US",
        greeting="Hello, this is the virtual assistant of {{ partner }}. This call is recorded.",
    )

    assert recording_problems(template=announced, records=True) == []


def test_no_announcement_is_a_problem_naming_the_greeting(partner) -> None:
    with translation.override("en"):
        [problem] = recording_problems(template=template(partner), records=True)

    assert "records its calls" in problem
    assert "greeting" in problem


def test_a_scripted_template_may_announce_in_its_first_prompt(partner) -> None:
    steps = [{**STEPS[0], "prompt": "Esta llamada se graba. " + STEPS[0]["prompt"]}, STEPS[1]]
    announced = template(partner, mode=CallTemplate.Mode.SCRIPTED, steps=steps)

    assert recording_announcement(announced) == "steps.0.prompt"
    assert recording_problems(template=announced, records=True) == []


def test_an_announcement_in_a_later_step_is_too_late(partner) -> None:
    # given the announcement only in the second step, heard after recording starts
    late = template(partner, mode=CallTemplate.Mode.SCRIPTED, steps=STEPS)

    with translation.override("en"):
        [problem] = recording_problems(template=late, records=True)

    assert recording_announcement(late) is None
    assert "first step" in problem


def test_an_ai_template_cannot_announce_outside_its_greeting(partner) -> None:
    # an AI template's steps are not said (the model speaks): only the greeting counts
    ai = template(partner, steps=[{**STEPS[1], "id": "confirm"}])

    assert recording_announcement(ai) is None


# --- A campaign's start ------------------------------------------------------------------


@pytest.fixture
def startable(campaign: Campaign) -> Campaign:
    campaign.caller_number = "+34910000000"
    campaign.save(update_fields=["caller_number"])
    add_contact(campaign=campaign, phone="+34910000001", variables={"first_name": "Ana"})
    return campaign


def test_a_recording_campaign_without_announcement_refuses_to_start(startable) -> None:
    startable.record_calls = True
    startable.save(update_fields=["record_calls"])

    with translation.override("en"), pytest.raises(CampaignStateError) as refused:
        start_campaign(campaign=startable)

    assert any("records its calls" in reason for reason in refused.value.reasons)
    startable.refresh_from_db()
    assert startable.state == Campaign.State.DRAFT


def test_a_recording_campaign_that_announces_starts(startable) -> None:
    startable.record_calls = True
    startable.save(update_fields=["record_calls"])
    startable.template.greeting += " Esta llamada será grabada."
    startable.template.save()

    assert start_problems(campaign=startable) == []
    start_campaign(campaign=startable)

    assert startable.state == Campaign.State.RUNNING


def test_the_api_names_the_missing_announcement(api_client, api_partner, settings) -> None:
    # given a campaign of the partner that records, its template silent about it
    settings.TWILIO_PHONE_NUMBER = "+34910000000"
    settings.ELEVENLABS_API_KEY = ""
    silent = CallTemplateFactory(
        partner=api_partner,
        greeting="Hola. Le llamamos de {{ partner }}. Soy un asistente automático.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
    )
    campaign = CampaignFactory(partner=api_partner, template=silent, record_calls=True)
    add_contact(campaign=campaign, phone="+34910000001")

    response = api_client.post(
        f"/api/v1/campaigns/{campaign.pk}/start/", headers={"Accept-Language": "en"}
    )

    assert response.status_code == 409
    messages = [error["message"] for error in response.json()["errors"]]
    assert any("records its calls" in message for message in messages)


def test_the_admin_start_action_names_the_missing_announcement(admin_client, startable) -> None:
    startable.record_calls = True
    startable.save(update_fields=["record_calls"])

    response = admin_client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "start_campaigns", "_selected_action": [startable.pk], "index": 0},
        headers={"Accept-Language": "en"},
    )

    [(level, text)] = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert level == "error"
    assert "records its calls" in text
    startable.refresh_from_db()
    assert startable.state == Campaign.State.DRAFT
