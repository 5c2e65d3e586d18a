from __future__ import annotations

import pytest
from django.utils.translation import override

from templates.models import CallTemplate
from templates.rendering import (
    MissingVariable,
    TemplateRenderError,
    contact_context,
    contact_independent_sentences,
    contact_sentences,
    render_instructions,
    render_line,
    render_template,
    required_variables,
    sentences,
    validate_text,
)
from tests.factories import ContactFactory

DECLARED = {"first_name", "appointment"}


def problems(text: str, *, field: str = "greeting") -> list[str]:
    with override("en"), pytest.raises(TemplateRenderError) as excinfo:
        validate_text(field=field, text=text, allowed_variables=DECLARED)
    return [problem.message for problem in excinfo.value.problems]


def test_validate_text_returns_the_variables_used() -> None:
    text = "Hola {{ first_name }}, le llama {{ partner }}.{% if appointment %} Cita.{% endif %}"

    used = validate_text(field="greeting", text=text, allowed_variables=DECLARED)

    assert used == {"first_name", "partner", "appointment"}


def test_validate_text_allows_reserved_names_without_declaring_them() -> None:
    text = "{{ phone }} {{ external_id }} {{ campaign }} {{ partner }}"

    used = validate_text(field="greeting", text=text, allowed_variables=set())

    assert used == {"phone", "external_id", "campaign", "partner"}


def test_validate_text_allows_the_listed_filters_with_literal_arguments() -> None:
    text = (
        '{{ first_name|default:"amigo"|capfirst }} {{ appointment|lower|upper|title }} '
        '{{ first_name|yesno:"sí,no" }} {{ first_name|cut:" " }} {# a note #}'
    )

    assert validate_text(field="greeting", text=text, allowed_variables=DECLARED) == DECLARED


def test_validate_text_refuses_unknown_variable_naming_it_and_its_line() -> None:
    assert problems("Hola {{ first_nme }}") == [
        "Unknown variable “first_nme” in greeting, line 1. Declare it in the template's variables."
    ]


def test_validate_text_reports_the_line_in_the_field() -> None:
    [message] = problems("Hola.\n{% load static %}")

    assert message.startswith("Tag “load” is not allowed (greeting, line 2).")


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("{% load static %}", "load"),
        ('{% include "x.html" %}', "include"),
        ('{% extends "base.html" %}', "extends"),
        ("{% block body %}x{% endblock %}", "block"),
        ('{% url "admin:index" %}', "url"),
        ("{% csrf_token %}", "csrf_token"),
        ("{% debug %}", "debug"),
        ('{% now "Y" %}', "now"),
        ("{% for x in y %}{{ x }}{% endfor %}", "for"),
        ("{% with name=first_name %}{{ name }}{% endwith %}", "with"),
        ("{% templatetag openblock %}", "templatetag"),
        ('{% ssi "/etc/passwd" %}', "ssi"),
        ("{% comment %}x{% endcomment %}", "comment"),
        ("{% if first_name %}{% now 'Y' %}{% endif %}", "now"),
    ],
)
def test_validate_text_refuses_tags_outside_the_allow_list(text: str, tag: str) -> None:
    [message] = problems(text)

    assert message.startswith(f"Tag “{tag}” is not allowed (greeting, line 1).")


@pytest.mark.parametrize(
    "variable",
    ["contact.__class__", "first_name.__class__.__mro__", "first_name.upper", "_secret"],
)
def test_validate_text_refuses_variables_with_dots_or_leading_underscores(variable: str) -> None:
    [message] = problems(f"Hola {{{{ {variable} }}}}")

    assert message.startswith(f"Variable “{variable}” is not allowed (greeting, line 1).")


def test_validate_text_refuses_dotted_variables_in_conditions() -> None:
    [message] = problems("{% if first_name.__class__ %}x{% endif %}")

    assert message.startswith("Variable “first_name.__class__” is not allowed")


@pytest.mark.parametrize(
    "text",
    [
        "{{ first_name|safe }}",
        "{{ first_name|nonexistent }}",
        "{% if first_name|safe %}x{% endif %}",
    ],
)
def test_validate_text_refuses_filters_outside_the_allow_list(text: str) -> None:
    [message] = problems(text)
    name = "nonexistent" if "nonexistent" in text else "safe"

    assert message.startswith(f"Filter “{name}” is not allowed (greeting, line 1).")
    assert "capfirst, cut, default, lower, title, upper, yesno" in message


def test_validate_text_refuses_variables_as_filter_arguments() -> None:
    assert problems("{{ first_name|default:appointment }}") == [
        "Filter “default” takes quoted text, not the variable “appointment” (greeting, line 1)."
    ]


def test_validate_text_reports_syntax_errors_with_their_line() -> None:
    [message] = problems("Hola.\n{% if first_name %}sin cerrar")

    assert message.startswith("Syntax error in greeting, line 2: Unclosed tag on line 2: 'if'")


def test_validate_text_names_step_prompts_by_their_number() -> None:
    assert problems("{{ nope }}", field="steps.1.prompt") == [
        "Unknown variable “nope” in step 2 prompt, line 1. Declare it in the template's variables."
    ]


def test_template_render_error_is_a_value_error_listing_its_problems() -> None:
    with pytest.raises(ValueError, match="first_nme") as excinfo:
        validate_text(field="greeting", text="{{ first_nme }}", allowed_variables=DECLARED)

    [problem] = excinfo.value.problems
    assert (problem.field, problem.line) == ("greeting", 1)


def test_render_line_collapses_whitespace() -> None:
    text = "  Hola\n\n   {{ first_name }},\t su cita es {{ appointment }}.  "

    rendered = render_line(text=text, context={"first_name": "Lucía", "appointment": "hoy"})

    assert rendered == "Hola Lucía, su cita es hoy."


def test_render_line_does_not_escape_speech() -> None:
    assert render_line(text="{{ first_name }}", context={"first_name": "Tom & <Jerry>"}) == (
        "Tom & <Jerry>"
    )


def test_render_line_applies_filters_and_conditions() -> None:
    text = (
        '{{ first_name|capfirst }} {{ first_name|upper }} {{ appointment|cut:" " }} '
        '{% if appointment == "mañana" %}pronto{% else %}más tarde{% endif %}'
    )

    rendered = render_line(text=text, context={"first_name": "lucía", "appointment": "el lunes"})

    assert rendered == "Lucía LUCÍA ellunes más tarde"


@pytest.mark.parametrize("context", [{}, {"first_name": ""}, {"first_name": "  "}])
def test_render_line_raises_missing_variable_naming_it(context: dict[str, str]) -> None:
    with override("en"), pytest.raises(MissingVariable) as excinfo:
        render_line(text="Hola {{ first_name }}.", context=context)

    assert excinfo.value.name == "first_name"
    assert str(excinfo.value) == "missing variable first_name"


def test_render_line_default_makes_a_variable_optional() -> None:
    assert render_line(text='Hola {{ first_name|default:"amigo" }}.', context={}) == "Hola amigo."


def test_render_line_variable_tested_by_if_is_optional() -> None:
    text = "Hola{% if first_name %} {{ first_name }}{% endif %}."

    assert render_line(text=text, context={}) == "Hola."
    assert render_line(text=text, context={"first_name": "Lucía"}) == "Hola Lucía."


def test_render_line_refuses_text_that_breaks_the_sandbox() -> None:
    with pytest.raises(TemplateRenderError):
        render_line(text="{{ first_name.__class__ }}", context={"first_name": "x"})


def test_required_variables_are_spoken_without_default_or_guard() -> None:
    template = CallTemplate(
        mode=CallTemplate.Mode.AI,
        greeting="Hola {{ first_name }}, le llama {{ partner }}.",
        voicemail_message='Su cita es {{ appointment|default:"pronto" }}.',
        closing_line="Adiós{% if nickname %} {{ nickname }}{% endif %}.",
        instructions="El médico es {{ doctor }}.",
    )

    assert required_variables(template=template) == {"first_name", "doctor"}


def test_required_variables_of_scripted_template_include_step_prompts() -> None:
    template = CallTemplate(
        mode=CallTemplate.Mode.SCRIPTED,
        greeting="Hola.",
        instructions="{{ ignored }}",
        steps=[{"id": "a", "prompt": "¿Viene {{ first_name }}?", "answers": []}],
    )

    assert required_variables(template=template) == {"first_name"}


@pytest.mark.django_db
def test_contact_context_holds_variables_and_reserved_names(campaign) -> None:
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        external_id="c-1",
        variables={"first_name": "Lucía", "age": 42, "nothing": None, "phone": "spoof"},
    )

    assert contact_context(contact=contact) == {
        "first_name": "Lucía",
        "age": "42",
        "nothing": "",
        "phone": "+34600000001",
        "external_id": "c-1",
        "campaign": "Spring",
        "partner": "Acme",
    }


def test_render_template_renders_every_spoken_line_and_step_prompt() -> None:
    template = CallTemplate(
        mode=CallTemplate.Mode.SCRIPTED,
        greeting="Hola {{ first_name }}.",
        voicemail_message="Llámenos al 910 000 000.",
        closing_line="",
        steps=[
            {
                "id": "confirm",
                "prompt": "¿Viene {{ appointment }}?",
                "retry_prompt": "Diga sí o no.",
                "answers": [{"keywords": ["sí"], "next": "end"}],
            }
        ],
    )

    lines = render_template(
        template=template, context={"first_name": "Lucía", "appointment": "el lunes"}
    )

    assert lines == {
        "greeting": "Hola Lucía.",
        "voicemail_message": "Llámenos al 910 000 000.",
        "steps.0.prompt": "¿Viene el lunes?",
        "steps.0.retry_prompt": "Diga sí o no.",
    }


@pytest.mark.django_db
def test_contact_independent_sentences_are_those_using_only_campaign_and_partner(
    partner,
) -> None:
    template = CallTemplate(
        partner=partner,
        greeting="Hola {{ first_name }}. Le llama {{ partner }}. Soy un asistente automático.",
        voicemail_message="Le llama {{ partner|upper }} por la campaña {{ campaign }}. Gracias.",
        closing_line="Gracias.",
        transfer_line='Le paso, {{ first_name|default:"" }}.',
    )

    independent = contact_independent_sentences(template=template, campaign_name="Primavera")
    dependent = contact_sentences(
        template=template, context={"first_name": "Ana", "campaign": "Primavera", "partner": "Acme"}
    )

    # the same sentence in two fields is voiced once
    assert independent == [
        "Le llama Acme.",
        "Soy un asistente automático.",
        "Le llama ACME por la campaña Primavera.",
        "Gracias.",
    ]
    assert dependent == ["Hola Ana.", "Le paso, Ana."]


@pytest.mark.django_db
def test_the_greeting_for_those_who_call_back_is_voiced_ahead_only_when_the_same_for_all(
    partner,
) -> None:
    template = CallTemplate(
        partner=partner,
        greeting="Hola. Le llama {{ partner }}.",
        inbound_greeting="Gracias por llamar, {{ first_name }}. Le atiende {{ partner }}.",
    )

    independent = contact_independent_sentences(template=template, campaign_name="Primavera")
    dependent = contact_sentences(
        template=template, context={"first_name": "Ana", "campaign": "Primavera", "partner": "Acme"}
    )

    # Few contacts call back: their own sentence is voiced when said, not for everyone.
    assert independent == ["Hola.", "Le llama Acme.", "Le atiende Acme."]
    assert dependent == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola. ¿Qué tal? ¡Bien!", ["Hola.", "¿Qué tal?", "¡Bien!"]),
        ("Hola {{ first_name }}. Adiós.", ["Hola {{ first_name }}.", "Adiós."]),
        ("Cita a las 10.30 h. Gracias", ["Cita a las 10.30 h.", "Gracias"]),
        (
            "{% if first_name %}Hola. {{ first_name }}.{% endif %} Adiós.",
            ["{% if first_name %}Hola. {{ first_name }}.{% endif %}", "Adiós."],
        ),
        ("Espere… ya está.", ["Espere…", "ya está."]),
        ("  ", []),
    ],
)
def test_sentences_cut_plain_text_only(text, expected) -> None:
    assert sentences(text) == expected


# --- render_instructions: contact values apart --------------------------------------------


def test_render_instructions_refers_to_contact_values_and_gives_them_apart() -> None:
    context = {
        "first_name": "Ana",
        "appointment": "martes",
        "campaign": "Spring",
        "partner": "Acme",
    }
    text = "{{ partner }}: confirma la cita de {{ first_name|upper }} el {{ appointment }}."

    instructions = render_instructions(text=text, context=context)

    assert instructions.text == (
        "Acme: confirma la cita de [contact.first_name] el [contact.appointment]."
    )
    assert instructions.data == {"first_name": "Ana", "appointment": "martes"}


def test_render_instructions_lets_values_choose_the_templates_own_words() -> None:
    context = {"first_name": "", "appointment": "x", "vip": "1"}
    text = (
        "Saluda a {{ first_name|default:'la persona' }}.{% if vip %} Es VIP.{% else %} No."
        "{% endif %} {{ appointment|yesno:'Con cita,Sin cita' }}."
    )

    instructions = render_instructions(text=text, context=context)

    assert instructions.text == "Saluda a la persona. Es VIP. Con cita."
    assert instructions.data == {}


def test_render_instructions_needs_the_variables_the_text_needs() -> None:
    with pytest.raises(MissingVariable):
        render_instructions(text="Confirma la cita de {{ first_name }}.", context={})
