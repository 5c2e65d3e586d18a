from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils.translation import override

from campaigns.models import Partner
from templates.linting import lint_template
from templates.models import CallTemplate

pytestmark = pytest.mark.django_db

NAMES_COMPANY = "The greeting must name the company: include {{ partner }} or “Acme”."
DISCLOSES_AI = (
    "The greeting must say that the caller is an automated assistant (for example "
    "“asistente virtual” or “automated assistant”)."
)
LEAVES_NUMBER = (
    "The voicemail message must leave a number to call back (at least 9 digits) or "
    "{{ callback_number }}."
)


def lint(partner: Partner, **fields: object) -> list[str]:
    defaults: dict[str, object] = {
        "name": "Cita",
        "mode": CallTemplate.Mode.AI,
        "greeting": "Hola, le llama el asistente virtual de {{ partner }}.",
        "voicemail_message": "Llámenos al +34 910 000 000.",
    }
    template = CallTemplate(partner=partner, **{**defaults, **fields})
    with override("en"):
        return lint_template(template=template)


def test_lint_template_passes_the_seeded_demo_templates() -> None:
    call_command("seed_demo", stdout=io.StringIO())

    for template in CallTemplate.objects.all():
        assert lint_template(template=template) == [], template.name


def test_lint_template_passes_a_template_that_discloses_everything(partner) -> None:
    assert lint(partner) == []


def test_lint_template_fails_greeting_without_the_company(partner) -> None:
    assert lint(partner, greeting="Hola, soy un asistente virtual.") == [NAMES_COMPANY]


@pytest.mark.parametrize(
    "greeting",
    [
        "Hola, soy el asistente virtual de ACME.",
        "Hola, soy el asistente virtual de {{ partner|upper }}.",
    ],
)
def test_lint_template_accepts_the_company_by_name_or_variable(partner, greeting) -> None:
    assert lint(partner, greeting=greeting) == []


def test_lint_template_holds_the_greeting_for_those_who_call_back_to_the_same_rules(
    partner,
) -> None:
    from templates.linting import lint_problems

    template = CallTemplate(
        partner=partner,
        name="Cita",
        greeting="Hola, le llama el asistente virtual de {{ partner }}.",
        inbound_greeting="Gracias por devolvernos la llamada.",
        voicemail_message="Llámenos al +34 910 000 000.",
    )

    with override("en"):
        problems = lint_problems(template=template)

    assert problems == {"inbound_greeting": [NAMES_COMPANY, DISCLOSES_AI]}


def test_lint_template_passes_without_a_greeting_for_those_who_call_back(partner) -> None:
    # The standard one names the company and says an assistant speaks.
    assert lint(partner, inbound_greeting="") == []
    assert lint(partner, inbound_greeting="Gracias. Le atiende el asistente virtual de Acme.") == []


def test_lint_template_fails_ai_greeting_without_disclosure(partner) -> None:
    assert lint(partner, greeting="Hola, le llamo de {{ partner }}.") == [DISCLOSES_AI]


@pytest.mark.parametrize(
    "phrase",
    [
        "Soy un ASISTENTE AUTOMATICO",
        "Soy un asistente   automático",
        "Le habla un sistema automático",
        "Esta es una llamada automática",
        "Soy una inteligencia artificial",
        "This is an automated call",
        "I am an AI assistant",
        "I'm a virtual assistant",
    ],
)
def test_lint_template_matches_disclosure_without_accents_or_case(partner, phrase) -> None:
    assert lint(partner, greeting=f"{phrase} de {{{{ partner }}}}.") == []


def test_lint_template_needs_no_disclosure_in_scripted_mode(partner) -> None:
    assert lint(partner, mode=CallTemplate.Mode.SCRIPTED, greeting="Hola, le llama Acme.") == []


@pytest.mark.parametrize("voicemail", ["", "Llámenos.", "Llame al 112.", "Ref. 12345678"])
def test_lint_template_fails_voicemail_without_callback_number(partner, voicemail) -> None:
    assert lint(partner, voicemail_message=voicemail) == [LEAVES_NUMBER]


@pytest.mark.parametrize(
    "voicemail",
    [
        "Llámenos al 910000000.",
        "Llámenos al 910 00 00 00.",
        "Call us at +1 415-555-0100.",
        "Llámenos al 910.000.000.",
        "Llámenos al {{ callback_number }}.",
    ],
)
def test_lint_template_accepts_voicemail_with_callback_number(partner, voicemail) -> None:
    assert lint(partner, voicemail_message=voicemail) == []


def test_lint_template_reports_every_failing_rule(partner) -> None:
    assert lint(partner, greeting="Hola.", voicemail_message="") == [
        NAMES_COMPANY,
        DISCLOSES_AI,
        LEAVES_NUMBER,
    ]
