from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.forms import modelform_factory
from django.utils.translation import override

from campaigns.models import Partner
from templates.models import CallTemplate
from tests.database import violates
from tests.factories import CallTemplateFactory, PartnerFactory

pytestmark = pytest.mark.django_db


def test_call_template_defaults_to_spanish_ai(partner) -> None:
    template = CallTemplateFactory(partner=partner, name="Hola", greeting="Hola")

    assert (template.language, template.mode) == ("es-ES", "ai")


def test_call_template_name_unique_per_partner(partner) -> None:
    CallTemplateFactory(partner=partner, name="Hola", greeting="Hola")
    other = PartnerFactory(name="Other")

    assert violates(
        lambda: CallTemplate.objects.create(partner=partner, name="Hola", greeting="Hola")
    )
    assert not violates(
        lambda: CallTemplate.objects.create(partner=other, name="Hola", greeting="Hola")
    )


def test_call_template_mode_known_and_greeting_required(partner) -> None:
    assert violates(
        lambda: CallTemplate.objects.create(
            partner=partner, name="a", greeting="Hola", mode="psychic"
        )
    )
    assert violates(lambda: CallTemplate.objects.create(partner=partner, name="b", greeting=""))


@pytest.mark.parametrize("language", ["es_ES", "spanish", "e", "es-"])
def test_call_template_language_must_be_bcp47(partner, language) -> None:
    template = CallTemplate(partner=partner, name="x", greeting="Hola", language=language)

    with pytest.raises(ValidationError) as excinfo:
        template.full_clean()

    assert "language" in excinfo.value.message_dict


def valid_template(partner: Partner, **fields: object) -> CallTemplate:
    defaults: dict[str, object] = {
        "name": "Cita",
        "greeting": "Hola {{ first_name }}, le llama el asistente virtual de {{ partner }}.",
        "instructions": "Confirma la cita {{ appointment }}.",
        "variables": {"first_name": "Lucía", "appointment": "el martes"},
        "voicemail_message": "Llámenos al 910 000 000.",
    }
    return CallTemplate(partner=partner, **{**defaults, **fields})


def clean_errors(template: CallTemplate) -> dict[str, list[str]]:
    with override("en"), pytest.raises(ValidationError) as excinfo:
        template.full_clean()
    return excinfo.value.message_dict


def step(step_id: str = "confirm", **fields: object) -> dict[str, object]:
    return {
        "id": step_id,
        "prompt": "¿Vendrá {{ appointment }}?",
        "answers": [
            {"keywords": ["sí"], "digit": "1", "next": "end", "outcome": {"attending": True}},
            {"keywords": ["no"], "digit": "2", "next": "transfer"},
        ],
        **fields,
    }


def test_call_template_clean_accepts_a_valid_template(partner) -> None:
    valid_template(partner).full_clean()
    valid_template(
        partner, name="Guion", mode="scripted", instructions="", steps=[step()]
    ).full_clean()


def test_call_template_clean_accepts_the_seeded_demo_templates() -> None:
    call_command("seed_demo", stdout=io.StringIO())

    templates = CallTemplate.objects.all()
    assert {template.mode for template in templates} == {"ai", "scripted"}
    for template in templates:
        template.full_clean()


@pytest.mark.parametrize("name", ["First", "_first", "1st", "first-name", "first name", ""])
def test_call_template_variable_names_must_be_lowercase_identifiers(partner, name) -> None:
    errors = clean_errors(valid_template(partner, variables={name: "x"}))

    assert errors["variables"] == [
        f"“{name}” is not a valid variable name: use lowercase letters, digits and "
        "underscores, starting with a letter."
    ]


def test_call_template_variables_may_not_take_reserved_names(partner) -> None:
    errors = clean_errors(valid_template(partner, variables={"phone": "+34600000000"}))

    assert errors["variables"] == [
        "“phone” is filled in by the call itself (reserved: campaign, external_id, partner, phone)."
    ]


def test_call_template_variable_samples_must_be_text(partner) -> None:
    errors = clean_errors(
        valid_template(partner, variables={"first_name": "Lucía", "appointment": 3})
    )

    assert errors["variables"] == ["The sample value of “appointment” must be text."]


def test_call_template_variables_must_be_an_object(partner) -> None:
    errors = clean_errors(valid_template(partner, variables=["first_name"]))

    assert errors["variables"] == ["Variables must map each name to a sample value."]


def test_call_template_refuses_undeclared_variable_on_its_field(partner) -> None:
    errors = clean_errors(valid_template(partner, closing_line="Adiós, {{ first_nme }}."))

    assert errors == {
        "closing_line": [
            "Unknown variable “first_nme” in closing line, line 1. "
            "Declare it in the template's variables."
        ]
    }


def test_call_template_checks_the_greeting_for_those_who_call_back(partner) -> None:
    errors = clean_errors(valid_template(partner, inbound_greeting="Gracias, {{ first_nme }}."))

    assert errors == {
        "inbound_greeting": [
            "Unknown variable “first_nme” in greeting when called back, line 1. "
            "Declare it in the template's variables."
        ]
    }


def test_call_template_refuses_sandbox_escape_in_a_spoken_field(partner) -> None:
    errors = clean_errors(valid_template(partner, greeting="Hola\n{% load static %}"))

    assert list(errors) == ["greeting"]
    assert errors["greeting"][0].startswith("Tag “load” is not allowed (greeting, line 2).")


def test_call_template_renders_instructions_with_the_same_rules(partner) -> None:
    errors = clean_errors(valid_template(partner, instructions="{{ settings.SECRET_KEY }}"))

    assert errors["instructions"][0].startswith(
        "Variable “settings.SECRET_KEY” is not allowed (AI instructions, line 1)."
    )


def test_call_template_ai_mode_needs_instructions(partner) -> None:
    errors = clean_errors(valid_template(partner, instructions="  "))

    assert errors == {
        "instructions": [
            "An AI template needs instructions: they are the assistant's system prompt."
        ]
    }


def test_call_template_scripted_mode_needs_a_step(partner) -> None:
    errors = clean_errors(valid_template(partner, mode="scripted", steps=[]))

    assert errors == {"steps": ["A scripted template needs at least one step."]}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"id": "a"}, "Steps must be a list of objects."),
        ([step(), step()], "Step 2 repeats the id “confirm”."),
        ([step(step_id="")], "Step 1 needs an id."),
        ([step(step_id="end")], "Step 1 cannot be called “end”: answers use it to leave."),
        ([step(prompt="")], "Step 1 needs a prompt."),
        ([step(promt="¿Sí?")], "Step 1 has an unknown key “promt”."),
        ([step(retry_prompt=["¿Sí?"])], "The retry prompt of step 1 must be text."),
        (
            [step(prompt="¿{{ nombre }}?")],
            "Unknown variable “nombre” in step 1 prompt, line 1. "
            "Declare it in the template's variables.",
        ),
        (
            [step(retry_prompt="{% now 'Y' %}")],
            "Tag “now” is not allowed (step 1 retry prompt, line 1). "
            "Only if, elif and else may be used.",
        ),
        ([step(answers={"keywords": ["sí"]})], "The answers of step 1 must be a list of objects."),
        (
            [step(answers=[{"keywords": ["sí"], "next": "nowhere"}])],
            "Step 1, answer 1 leads to “nowhere”, which is neither a step id nor one of end, "
            "transfer, opt_out.",
        ),
        (
            [step(answers=[{"keywords": [], "digit": "", "next": "end"}])],
            "Step 1, answer 1 needs keywords or a digit.",
        ),
        (
            [step(answers=[{"digit": "1", "next": "end"}, {"digit": "1", "next": "opt_out"}])],
            "Step 1, answer 2: digit 1 is already taken.",
        ),
        (
            [step(answers=[{"digit": "12", "next": "end"}])],
            'Step 1, answer 1: the digit must be "0" to "9", or empty.',
        ),
        (
            [step(answers=[{"keywords": "sí", "next": "end"}])],
            "Step 1, answer 1: keywords must be a list of words.",
        ),
        (
            [step(answers=[{"digit": "1", "next": "end", "outcome": "yes"}])],
            "Step 1, answer 1: the outcome must be an object.",
        ),
        (
            [step(answers=[{"digit": "1", "next": "end", "goto": "x"}])],
            "Step 1, answer 1 has an unknown key “goto”.",
        ),
    ],
)
def test_call_template_steps_are_validated(partner, steps, message) -> None:
    errors = clean_errors(valid_template(partner, mode="scripted", steps=steps))

    assert message in errors["steps"]


def test_call_template_steps_may_lead_to_other_steps(partner) -> None:
    steps = [
        step("ask", answers=[{"keywords": ["sí"], "next": "confirm"}]),
        step("confirm"),
    ]

    valid_template(partner, mode="scripted", steps=steps).full_clean()


def test_call_template_outcome_schema_must_be_valid_json_schema(partner) -> None:
    schema = {"type": "object", "properties": {"attending": {"type": "bool"}}}

    errors = clean_errors(valid_template(partner, outcome_schema=schema))

    assert errors["outcome_schema"] == [
        "outcome schema, at properties/attending/type: 'bool' is not valid under any of the "
        "given schemas"
    ]


@pytest.mark.parametrize("schema", [{"type": "string"}, {"properties": {}}, True])
def test_call_template_outcome_schema_must_describe_an_object(partner, schema) -> None:
    errors = clean_errors(valid_template(partner, outcome_schema=schema))

    assert errors["outcome_schema"] == [
        'The outcome schema must describe an object: give it "type": "object".'
    ]


def test_call_template_outcome_schema_may_be_empty(partner) -> None:
    valid_template(partner, outcome_schema={}).full_clean()


def test_call_template_form_shows_each_problem_next_to_its_field(partner) -> None:
    Form = modelform_factory(CallTemplate, exclude=[])
    data = {
        "partner": partner.pk,
        "name": "Cita",
        "language": "es-ES",
        "mode": "ai",
        "variables": '{"First": "x"}',
        "greeting": "Hola {{ first_name }}",
        "instructions": "",
        "steps": "[]",
        "outcome_schema": '{"type": "object", "properties": {"a": {"type": "bool"}}}',
    }

    with override("en"):
        form = Form(data)
        assert not form.is_valid()

    assert set(form.errors) == {"variables", "greeting", "instructions", "outcome_schema"}


@pytest.mark.parametrize(
    ("language", "closest"),
    [("es", "es-ES"), ("en", "en-US"), ("en-UK", "en-GB"), ("es-es", "es-ES"), ("pt", "pt-PT")],
)
def test_call_template_language_must_be_one_twilio_gather_takes(partner, language, closest) -> None:
    # Twilio's <Gather> refuses a tag it does not list (warning 13512): the callee's words
    # would be lost on every call, so the template says so, naming the tag to use.
    template = CallTemplate(partner=partner, name="x", greeting="Hola", language=language)

    with override("en"), pytest.raises(ValidationError) as excinfo:
        template.full_clean()

    [message] = excinfo.value.message_dict["language"]
    assert f"“{language}”" in message and f"“{closest}”" in message


@pytest.mark.parametrize("language", ["es-ES", "es-MX", "en-GB", "ca-ES", "cmn-Hans-CN"])
def test_call_template_language_twilio_takes_is_accepted(partner, language) -> None:
    template = valid_template(partner, language=language)

    template.full_clean()
