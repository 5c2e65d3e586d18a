"""Call scripts a hostile partner writes to exhaust memory or CPU: huge fields, lines that
expand when filled in, deep {% if %} nesting, long conditions and filter chains, and a
parse cache filled with distinct texts. Each is refused with a 400 naming the limit, or,
on a live call, cut to fit."""

from __future__ import annotations

import gc
import json
import logging
import time
import tracemalloc
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.urls import reverse
from django.utils import translation

from calls import telephony
from calls.models import Call
from campaigns.models import Contact, Partner
from campaigns.prerendering import prerender_contact_speech
from campaigns.services import CampaignStateError, start_campaign
from templates import rendering
from templates.linting import lint_problems
from templates.models import CallTemplate
from templates.rendering import cut_at_sentence, render_line, validate_text
from tests.factories import (
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    VoiceFactory,
)
from tests.fakes.elevenlabs import BELLA_ID

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
FOUR_MB = 4 * 1024 * 1024
GREETING = "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."


def payload(**overrides: Any) -> dict[str, Any]:
    """A template that passes validation and the disclosure lint."""
    return {
        "name": "Recordatorio",
        "variables": {"first_name": "Lucía"},
        "greeting": GREETING,
        "instructions": "Confirma la cita de {{ first_name }}.",
        "voicemail_message": "Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
        "closing_line": "Gracias, adiós.",
        **overrides,
    }


def errors_by_field(response) -> dict[str | None, list[str]]:
    found: dict[str | None, list[str]] = {}
    for error in response.json()["errors"]:
        found.setdefault(error["field"], []).append(error["message"])
    return found


def nested_ifs(depth: int) -> str:
    return "{%if first_name%}" * depth + "x" + "{%endif%}" * depth


# --- Size of what is written ----------------------------------------------------------------


def test_a_4mb_greeting_is_refused_by_the_api_naming_field_and_limit(api_client) -> None:
    response = api_client.post(
        "/api/v1/templates/",
        payload(greeting="Hola. " * (FOUR_MB // 6)),
        format="json",
        headers=ENGLISH,
    )

    assert response.status_code == 400
    [message] = errors_by_field(response)["greeting"]
    assert "limit of 4000" in message
    assert len(response.content) < 2_000  # the answer names the field, not its text
    assert not CallTemplate.objects.exists()


def test_a_4mb_greeting_is_refused_by_the_admin_form(admin_client, partner) -> None:
    data = {
        "partner": partner.pk,
        "name": "Enorme",
        "language": "es-ES",
        "mode": "ai",
        "variables": json.dumps({"first_name": "Lucía"}),
        "greeting": "Hola. " * (FOUR_MB // 6),
        "instructions": "Confirma la cita.",
        "steps": "[]",
        "voicemail_message": "Llámenos al 910 000 000.",
        "outcome_schema": "{}",
    }

    response = admin_client.post(reverse("admin:templates_calltemplate_add"), data, headers=ENGLISH)

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["greeting"]
    assert "limit of 4000" in message
    assert not CallTemplate.objects.exists()


def test_each_spoken_field_and_step_prompt_has_the_line_limit(api_client, settings) -> None:
    settings.TEMPLATE_LINE_MAX_CHARS = 500
    long_line = "a" * 501
    steps = [{"id": "one", "prompt": long_line, "answers": [{"digit": "1", "next": "end"}]}]

    response = api_client.post(
        "/api/v1/templates/",
        payload(
            mode="scripted",
            steps=steps,
            inbound_greeting=long_line,
            voicemail_message=long_line,
            closing_line=long_line,
            opt_out_confirmation=long_line,
            transfer_line=long_line,
            transfer_failed_line=long_line,
        ),
        format="json",
        headers=ENGLISH,
    )

    assert response.status_code == 400
    errors = errors_by_field(response)
    for field in (
        "inbound_greeting",
        "voicemail_message",
        "closing_line",
        "opt_out_confirmation",
        "transfer_line",
        "transfer_failed_line",
    ):
        assert any("limit of 500" in message for message in errors[field]), field
    assert any("limit of 500 (step 1 prompt)" in message for message in errors["steps"])


def test_the_instructions_have_their_own_larger_limit(api_client, settings) -> None:
    settings.TEMPLATE_INSTRUCTIONS_MAX_CHARS = 5_000
    accepted = api_client.post(
        "/api/v1/templates/", payload(instructions="Sé amable. " * 400), format="json"
    )

    refused = api_client.post(
        "/api/v1/templates/",
        payload(name="Otra", instructions="Sé amable. " * 500),
        format="json",
        headers=ENGLISH,
    )

    assert accepted.status_code == 201  # 4,400 characters: over a line's limit, not this one
    assert refused.status_code == 400
    [message] = errors_by_field(refused)["instructions"]
    assert "limit of 5000" in message


@pytest.mark.parametrize("field", ["steps", "variables", "outcome_schema"])
def test_json_fields_are_refused_past_their_limit(api_client, settings, field) -> None:
    settings.TEMPLATE_JSON_MAX_CHARS = 10_000
    oversized = {
        "steps": [{"id": f"s{n}", "prompt": "Hola.", "answers": []} for n in range(500)],
        "variables": {f"v{n}": "Lucía" for n in range(1000)},
        "outcome_schema": {
            "type": "object",
            "properties": {f"p{n}": {"type": "string"} for n in range(1000)},
        },
    }[field]

    response = api_client.post(
        "/api/v1/templates/", payload(**{field: oversized}), format="json", headers=ENGLISH
    )

    assert response.status_code == 400
    [message] = errors_by_field(response)[field]
    assert "as JSON, more than the limit of 10000" in message


def test_a_line_saved_before_the_limit_is_refused_unparsed_and_named_at_the_next_edit(
    api_client, api_partner
) -> None:
    # given a template stored before the limit existed (no validation on this path)
    template = CallTemplate.objects.create(
        partner=api_partner, **payload(closing_line="Adiós. " * (FOUR_MB // 7))
    )

    # when it is previewed, and when another field is edited
    started = time.perf_counter()
    preview = api_client.post(
        f"/api/v1/templates/{template.pk}/preview/",
        {"audio": False},
        format="json",
        headers=ENGLISH,
    )
    elapsed = time.perf_counter() - started
    edit = api_client.patch(
        f"/api/v1/templates/{template.pk}/",
        {"name": "Nuevo nombre"},
        format="json",
        headers=ENGLISH,
    )

    # then both name the field and the limit, without parsing 4 MB of template
    assert preview.status_code == 400
    assert "limit of 4000" in errors_by_field(preview)["closing_line"][0]
    assert elapsed < 2.0
    assert edit.status_code == 400
    assert "limit of 4000" in errors_by_field(edit)["closing_line"][0]
    template.refresh_from_db()
    assert template.name == "Recordatorio"


def test_no_campaign_starts_with_a_line_saved_before_the_limit(partner) -> None:
    template = CallTemplate.objects.create(
        partner=partner, **payload(transfer_line="Le paso. " * 1000)
    )
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    campaign = CampaignFactory(
        partner=partner, name="Spring", template=template, voice=voice, caller_number="+34910000000"
    )
    ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})

    with translation.override("en"), pytest.raises(CampaignStateError) as refused:
        start_campaign(campaign=campaign)

    assert "limit of 4000 (transfer line)" in str(refused.value)
    assert lint_problems(template=template).keys() == {"transfer_line"}


def test_the_lint_names_a_step_prompt_saved_before_the_limit(partner) -> None:
    steps = [{"id": "one", "prompt": "¿Viene? " * 600, "answers": [{"digit": "1", "next": "end"}]}]
    template = CallTemplate.objects.create(partner=partner, **payload(mode="scripted", steps=steps))

    with translation.override("en"):
        problems = lint_problems(template=template)

    assert problems.keys() == {"steps"}
    assert "limit of 4000 (step 1 prompt)" in problems["steps"][0]


# --- Size of what is rendered ---------------------------------------------------------------


def test_preview_of_an_expanding_template_is_refused_with_a_small_answer(api_client) -> None:
    # 790 references to a 4,000-character value: 3 MB of speech from a legal template
    template = api_client.post(
        "/api/v1/templates/",
        payload(
            greeting="Le llamamos de {{ partner }}. Soy un asistente automático.",
            closing_line="{{first_name}}" * 280,
        ),
        format="json",
    ).json()

    started = time.perf_counter()
    response = api_client.post(
        f"/api/v1/templates/{template['id']}/preview/",
        {"audio": False, "variables": {"first_name": "x" * 4000}},
        format="json",
        headers=ENGLISH,
    )
    elapsed = time.perf_counter() - started

    assert response.status_code == 400
    [message] = errors_by_field(response)["closing_line"]
    assert "Too long once filled in" in message
    assert "limit of 4000" in message
    assert len(response.content) < 2_000
    assert elapsed < 2.0


def test_admin_preview_of_an_expanding_template_is_a_form_error(admin_client, partner) -> None:
    template = CallTemplate.objects.create(
        partner=partner,
        **payload(
            variables={"first_name": "x" * 4000},  # the sample value the preview speaks
            greeting="Le llamamos de {{ partner }}. Soy un asistente automático.",
            closing_line="{{first_name}}" * 280,
        ),
    )

    response = admin_client.post(
        reverse("admin:templates_calltemplate_preview", args=[template.pk]),
        {"contact": ""},
        headers=ENGLISH,
    )

    assert response.status_code == 200
    [message] = response.context["form"].non_field_errors()
    assert "limit of 4000 characters (closing line)" in message
    assert len(response.content) < 200_000


def test_preview_refuses_a_sample_value_longer_than_a_line(api_client, api_partner) -> None:
    template = CallTemplate.objects.create(partner=api_partner, **payload())

    response = api_client.post(
        f"/api/v1/templates/{template.pk}/preview/",
        {"audio": False, "variables": {"first_name": "x" * 4001}},
        format="json",
        headers=ENGLISH,
    )

    assert response.status_code == 400
    [message] = errors_by_field(response)["variables"]
    assert "first_name" in message
    assert "limit of 4000" in message


def test_rendering_stops_at_the_limit_whatever_the_contacts_data() -> None:
    # a contact value of 1 MB spoken 790 times would be 790 MB of output
    tracemalloc.start()
    try:
        with pytest.raises(rendering.LineTooLong) as raised:
            render_line(
                text="{{ note }}" * 390, context={"note": "y" * 1_000_000}, field="greeting"
            )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert raised.value.limit == 4000
    assert len(raised.value.cut) == 4000
    assert peak < 20_000_000  # a few copies of the one value, never all 390


def test_a_rendered_line_collapses_whitespace_as_before() -> None:
    context = {"a": "  uno \n dos  ", "b": "", "c": "tres"}
    text = "Hola{{ a }}{{ b|default:'' }} {{ c }}{{ c }} .\n\n{% if c %}  fin {% endif %}{{ a }}"

    expected = " ".join("Hola  uno \n dos    trestres .\n\n  fin   uno \n dos  ".split())
    assert render_line(text=text, context=context) == expected


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("Uno. Dos. Tres cuatro.", 12, "Uno. Dos."),
        ("Uno. Dos. Tres cuatro.", 9, "Uno. Dos."),
        ("¿Sí? Bien… vale.", 11, "¿Sí? Bien…"),
        ("Palabras sin punto final aquí", 12, "Palabras sin"),
        ("Palabrasinespacios", 8, "Palabras"),
        ("Cabe entero.", 12, "Cabe entero."),
    ],
)
def test_a_line_over_the_limit_is_cut_at_a_sentence_end(text, limit, cut) -> None:
    assert cut_at_sentence(text, limit) == cut


# --- Depth and length of constructs ---------------------------------------------------------


def test_if_nested_500_deep_answers_400_quickly_naming_the_limit(api_client, monkeypatch) -> None:
    parsed: list[int] = []  # the number of tokens of each text Django's parser is given
    parse = rendering._SandboxParser.parse

    def counted_parse(self, *args, **kwargs):
        parsed.append(len(self.tokens))
        return parse(self, *args, **kwargs)

    monkeypatch.setattr(rendering._SandboxParser, "parse", counted_parse)
    started = time.perf_counter()
    response = api_client.post(
        "/api/v1/templates/",
        payload(instructions=nested_ifs(500)),  # 8,500 characters: within the limit
        format="json",
        headers=ENGLISH,
    )
    elapsed = time.perf_counter() - started

    assert response.status_code == 400
    [message] = errors_by_field(response)["instructions"]
    assert "nested deeper than 10" in message
    # refused from the tags alone: Django's parser, which recurses per block, never ran on it
    assert all(count < 100 for count in parsed)  # other lines maybe, never its 1,001 tokens
    assert elapsed < 3.0


def test_nesting_is_limited_in_spoken_lines_too(api_client, settings) -> None:
    settings.TEMPLATE_MAX_NESTING = 3
    accepted = api_client.post(
        "/api/v1/templates/", payload(greeting=GREETING + nested_ifs(3)), format="json"
    )

    refused = api_client.post(
        "/api/v1/templates/",
        payload(name="Otra", greeting=GREETING + nested_ifs(4)),
        format="json",
        headers=ENGLISH,
    )

    assert accepted.status_code == 201
    assert refused.status_code == 400
    [message] = errors_by_field(refused)["greeting"]
    assert "nested deeper than 3 (greeting, line 1)" in message


@pytest.mark.parametrize(
    "condition",
    [
        "not " * 800 + "first_name",  # a prefix operator: the parser recurses per "not"
        " or ".join(["first_name"] * 1000),  # evaluated by recursion
        " == ".join(["first_name"] * 1000),
    ],
)
def test_a_long_if_condition_is_refused_before_it_can_recurse(api_client, condition) -> None:
    response = api_client.post(
        "/api/v1/templates/",
        payload(instructions="{% if " + condition + " %}x{% endif %}"),
        format="json",
        headers=ENGLISH,
    )

    assert response.status_code == 400
    [message] = errors_by_field(response)["instructions"]
    assert "more than the limit of 60" in message


def test_a_long_filter_chain_is_refused(api_client) -> None:
    response = api_client.post(
        "/api/v1/templates/",
        payload(greeting=GREETING + " {{ first_name" + "|upper" * 6 + " }}"),
        format="json",
        headers=ENGLISH,
    )

    assert response.status_code == 400
    [message] = errors_by_field(response)["greeting"]
    assert "6 filters, more than the limit of 5" in message


def test_usual_conditions_and_filters_still_pass() -> None:
    text = (
        "{% if first_name and not partner or first_name == 'Ana' %}"
        "{{ first_name|default:'cliente'|title }}{% elif partner %}{{ partner|upper }}"
        "{% else %}hola{% endif %}"
    )

    assert validate_text(field="greeting", text=text, allowed_variables={"first_name"}) == {
        "first_name",
        "partner",
    }


# --- The parse cache ------------------------------------------------------------------------


def test_the_parse_cache_is_bounded_by_the_size_of_what_it_holds(settings) -> None:
    settings.TEMPLATE_CACHE_MAX_CHARS = 100_000
    gc.collect()
    tracemalloc.start()
    try:
        before, _peak = tracemalloc.get_traced_memory()
        # 120 distinct lines of 3,900 characters: about 37 MB parsed, if all were kept
        for number in range(120):
            text = f"Línea {number}. " + "{% if first_name %}Hola {{ first_name }}.{% endif %}" * 75
            validate_text(field="greeting", text=text, allowed_variables={"first_name"})
            del text
        gc.collect()
        after, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert after - before < 15_000_000  # unbounded, the 120 parsed lines hold about 37 MB
    assert rendering._scans.chars <= 100_000
    assert len(rendering._scans) <= 100_000 // 3_900


def test_a_text_larger_than_the_whole_cache_is_not_kept(settings) -> None:
    settings.TEMPLATE_CACHE_MAX_CHARS = 1_000
    rendering._scans.clear()
    validate_text(field="greeting", text="Hola. " * 100, allowed_variables=set())
    validate_text(field="greeting", text="Hola {{ partner }}.", allowed_variables=set())

    validate_text(field="greeting", text="Adiós. " * 200, allowed_variables=set())

    assert len(rendering._scans) == 2
    assert rendering._scans.chars == 600 + len("Hola {{ partner }}.")


# --- On a live call ---------------------------------------------------------------------------


@pytest.fixture
def long_note_template(partner: Partner) -> CallTemplate:
    """A template whose greeting reads a contact's note, which may be very long."""
    return CallTemplateFactory(
        partner=partner,
        name="Con nota",
        variables={"first_name": "Lucía", "note": "Nada."},
        greeting=(
            "Le llamamos de {{ partner }}. Soy un asistente automático. {{ note }} Fin del aviso."
        ),
        instructions="Confirma la cita.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
    )


LONG_NOTE = "Recuerde traer su tarjeta sanitaria. " * 500  # 18,500 characters


@pytest.mark.django_db(transaction=True)
def test_a_live_greeting_over_the_limit_is_cut_at_a_sentence_and_spoken(
    client, settings, long_note_template, caplog
) -> None:
    # given a call answered by a contact whose note makes the greeting 18,000 characters long
    settings.APP_URL = "https://calls.example.com"
    settings.TELEPHONY_BACKEND = "sandbox"
    campaign = CampaignFactory(
        partner=long_note_template.partner,
        name="Spring",
        template=long_note_template,
        caller_number="+34910000000",
    )
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        variables={"note": LONG_NOTE},
        state=Contact.State.CALLING,
        attempts=1,
    )
    sid = "CA" + "b" * 32
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=sid,
        from_number="+34910000000",
        to_number=contact.phone,
    )
    path = reverse("calls:answer", kwargs={"call_id": call.pk})
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32}
    signature = telephony.sign_request(url=settings.APP_URL + path, params=params)

    # when Twilio asks what to say
    with caplog.at_level(logging.WARNING, logger="calls.dialogue"):
        response = client.post(path, params, headers={"x-twilio-signature": signature})

    # then the greeting is spoken, cut at a sentence end within the limit, and logged
    assert response.status_code == 200
    gather, _redirect = ET.fromstring(response.content)  # noqa: S314 - our own TwiML
    said = " ".join(say.text for say in gather if say.tag == "Say")
    assert said.startswith("Le llamamos de Acme. Soy un asistente automático. Recuerde")
    assert said.endswith("tarjeta sanitaria.")
    assert 3_900 < len(said) <= 4_000
    assert "Fin del aviso" not in said
    assert f"Call {call.pk}: greeting is longer than 4000 characters" in caplog.text


def test_lines_voiced_ahead_reach_elevenlabs_within_the_limit(
    fake_elevenlabs, long_note_template
) -> None:
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    campaign = CampaignFactory(
        partner=long_note_template.partner, name="Spring", template=long_note_template, voice=voice
    )
    contact = ContactFactory(campaign=campaign, phone="+34600000001", variables={"note": LONG_NOTE})

    with translation.override("en"):
        result = prerender_contact_speech(campaign=campaign, contacts=[contact])

    texts = [r.json["text"] for r in fake_elevenlabs.requests_to("/v1/text-to-speech")]
    assert texts
    assert max(len(text) for text in texts) <= 4_000
    assert result.failed == 0
