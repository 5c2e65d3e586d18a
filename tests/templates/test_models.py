from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Partner
from templates.models import CallTemplate
from tests.database import violates

pytestmark = pytest.mark.django_db


def test_call_template_defaults_to_spanish_ai(partner) -> None:
    template = CallTemplate.objects.create(partner=partner, name="Hola", greeting="Hola")

    assert (template.language, template.mode) == ("es-ES", "ai")


def test_call_template_name_unique_per_partner(partner) -> None:
    CallTemplate.objects.create(partner=partner, name="Hola", greeting="Hola")
    other = Partner.objects.create(name="Other")

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
