from __future__ import annotations

import pytest

from tests.database import violates
from tests.factories import VoiceFactory
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db


def test_voice_provider_id_is_unique() -> None:
    VoiceFactory(provider_voice_id="EXAVITQu4vr4xnSDxMaL", name="Bella")

    assert violates(
        lambda: Voice.objects.create(provider_voice_id="EXAVITQu4vr4xnSDxMaL", name="Bella 2")
    )


def test_speech_clip_key_unique_and_text_required() -> None:
    voice = VoiceFactory(provider_voice_id="v1", name="Bella")
    clip = {"voice": voice, "model_id": "eleven_multilingual_v2", "output_format": "ulaw_8000"}
    SpeechClip.objects.create(key="a" * 64, text="Hola", **clip)

    assert violates(lambda: SpeechClip.objects.create(key="a" * 64, text="Adiós", **clip))
    assert violates(lambda: SpeechClip.objects.create(key="b" * 64, text="", **clip))
