from __future__ import annotations

import pytest
from django.utils.translation import override

from campaigns.models import Partner
from templates.models import CallTemplate
from templates.rendering import MissingVariable
from templates.services import preview_template, preview_template_audio
from tests.factories import (
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    PartnerFactory,
    VoiceFactory,
)
from tests.fakes.elevenlabs import BELLA_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def template(partner: Partner) -> CallTemplate:
    return CallTemplateFactory(
        partner=partner,
        name="Cita",
        variables={"first_name": "Lucía", "appointment": "el martes"},
        greeting="Hola {{ first_name }}, le llama {{ partner }} por su cita {{ appointment }}.",
        voicemail_message="Llámenos al 910 000 000.",
        closing_line="Campaña {{ campaign }}.",
    )


def test_preview_template_uses_declared_samples_by_default(template) -> None:
    with override("en"):
        lines = preview_template(template=template)

    assert lines == {
        "greeting": "Hola Lucía, le llama Acme por su cita el martes.",
        "voicemail_message": "Llámenos al 910 000 000.",
        "closing_line": "Campaña Sample campaign.",
    }


def test_preview_template_lays_given_values_over_the_samples(template) -> None:
    lines = preview_template(template=template, variables={"first_name": "Javier"})

    assert lines["greeting"] == "Hola Javier, le llama Acme por su cita el martes."


def test_preview_template_renders_for_a_contact(template, campaign) -> None:
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000002",
        variables={"first_name": "Carmen", "appointment": "el jueves"},
    )

    lines = preview_template(template=template, contact=contact)

    assert lines["greeting"] == "Hola Carmen, le llama Acme por su cita el jueves."
    assert lines["closing_line"] == "Campaña Spring."


def test_preview_template_raises_missing_variable_for_contact_without_it(
    template, campaign
) -> None:
    contact = ContactFactory(
        campaign=campaign, phone="+34600000002", variables={"first_name": "Carmen"}
    )

    with pytest.raises(MissingVariable) as excinfo:
        preview_template(template=template, contact=contact)

    assert excinfo.value.name == "appointment"


def test_preview_template_raises_missing_variable_for_blank_value(template) -> None:
    with pytest.raises(MissingVariable) as excinfo:
        preview_template(template=template, variables={"first_name": ""})

    assert excinfo.value.name == "first_name"


def test_preview_template_refuses_contact_of_another_partner(template) -> None:
    other = CampaignFactory(partner=PartnerFactory(name="Other"), name="X")
    contact = ContactFactory(
        campaign=other, phone="+34600000003", variables={"first_name": "A", "appointment": "B"}
    )

    with override("en"), pytest.raises(ValueError, match="another partner"):
        preview_template(template=template, contact=contact)


def test_preview_template_refuses_contact_and_variables_together(template, campaign) -> None:
    contact = ContactFactory(campaign=campaign, phone="+34600000004")

    with pytest.raises(ValueError, match="not both"):
        preview_template(template=template, contact=contact, variables={})


def test_preview_template_audio_voices_each_sentence_for_samples(
    fake_elevenlabs, call_template, settings
) -> None:

    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")

    lines = preview_template_audio(template=call_template, voice=voice)

    greeting = lines["greeting"]
    assert [sentence.text for sentence in greeting] == [
        "Hola Lucía.",
        "Le llamamos de Acme.",
        "Soy un asistente automático.",
    ]
    assert all(s.audio_url.startswith(settings.APP_URL + "/clips/") for s in greeting)
    assert [s.text for s in lines["closing_line"]] == ["Gracias, adiós."]


def test_preview_template_audio_reports_sentences_it_could_not_voice(
    fake_elevenlabs, call_template
) -> None:

    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    fake_elevenlabs.fail_next(401, times=20)

    lines = preview_template_audio(
        template=call_template, voice=voice, variables={"first_name": "Ana"}
    )

    first = lines["greeting"][0]
    assert first.text == "Hola Ana."
    assert first.audio_url == ""
    assert first.error
