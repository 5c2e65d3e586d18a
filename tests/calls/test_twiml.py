"""The TwiML the Twilio backend writes: what Twilio speaks and how."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from calls import telephony
from voices.clips import Speech


def says(twiml: str) -> list[ET.Element]:
    return list(ET.fromstring(twiml).iter("Say"))  # noqa: S314 - our own TwiML


def test_say_names_the_voice_set_for_the_lines_language(settings) -> None:
    settings.TWILIO_SAY_VOICES = {"es-ES": "Polly.Lucia-Neural", "en-GB": "Polly.Amy-Neural"}

    twiml = telephony.hang_up_twiml(
        lines=[Speech(text="Hola.", language="es-ES"), Speech(text="Hello.", language="en-GB")]
    )

    assert [(say.get("language"), say.get("voice")) for say in says(twiml)] == [
        ("es-ES", "Polly.Lucia-Neural"),
        ("en-GB", "Polly.Amy-Neural"),
    ]


def test_say_without_a_voice_for_its_language_leaves_twilios_default(settings) -> None:
    settings.TWILIO_SAY_VOICES = {"es-ES": "Polly.Lucia-Neural"}

    [say] = says(telephony.hang_up_twiml(lines=[Speech(text="Bonjour.", language="fr-CA")]))

    assert say.get("language") == "fr-CA"
    assert say.get("voice") is None


def test_the_default_say_voices_cover_spanish_first(settings) -> None:
    # Spanish-first: the embedded default speaks es-ES with a Castilian voice.
    [say] = says(telephony.hang_up_twiml(lines=[Speech(text="Adiós.", language="es-ES")]))

    assert say.get("voice") == "Polly.Lucia-Neural"
