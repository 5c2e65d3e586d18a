"""Speech clips: rendered once, stored, served; <Say> when they cannot be had."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import SpeechClipFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID, fake_audio
from voices.clips import (
    SPEECH_FALLBACKS,
    ClipDeadlineExceeded,
    ClipFailed,
    _claim_new,
    clip_key,
    clip_url,
    model_for,
    render_clip,
    speech_for_line,
)
from voices.models import SpeechClip, Voice


@pytest.fixture
def bella(db) -> Voice:
    return VoiceFactory(provider_voice_id=BELLA_ID, name="Bella", settings={"stability": 0.5})


def fallbacks(reason: str) -> float:
    return SPEECH_FALLBACKS.labels(reason=reason)._value.get()


def test_clip_key_changes_with_every_input() -> None:
    base = {
        "text": "Hola",
        "voice_id": "v",
        "model_id": "m",
        "voice_settings": {"stability": 0.5},
        "output_format": "mp3_22050_32",
    }
    variants = [
        {**base, "text": "Hola."},
        {**base, "voice_id": "w"},
        {**base, "model_id": "n"},
        {**base, "voice_settings": {"stability": 0.6}},
        {**base, "output_format": "ulaw_8000"},
    ]

    keys = {clip_key(**base)} | {clip_key(**variant) for variant in variants}

    assert len(keys) == 6
    assert clip_key(**base) == clip_key(**{**base, "voice_settings": {"stability": 0.5}})


def test_render_clip_stores_audio_once_and_reuses_it(fake_elevenlabs, bella) -> None:
    # given a line rendered once
    first = render_clip(text="Hola,   le llamo de  Demo.", voice=bella)

    # when the same line (whitespace aside) is asked for again
    again = render_clip(text="Hola, le llamo de Demo.", voice=bella)

    # then the provider was asked once and the stored audio is what it returned
    assert again.pk == first.pk
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 1
    assert first.status == SpeechClip.Status.READY
    assert first.audio.read() == fake_audio(text="Hola, le llamo de Demo.", voice_id=BELLA_ID)
    assert (first.content_type, first.characters) == ("audio/mpeg", 23)
    assert first.size_bytes == first.audio.size
    sent = fake_elevenlabs.requests_to("/v1/text-to-speech")[0]
    assert sent.json["voice_settings"]["stability"] == 0.5
    assert sent.json["model_id"] == "eleven_multilingual_v2"


@pytest.mark.django_db(transaction=True)
def test_render_clip_concurrent_requests_render_the_line_once(fake_elevenlabs) -> None:
    # given a slow provider and six workers that want the same line at the same moment
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    fake_elevenlabs.delay = 0.5
    barrier = threading.Barrier(6)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(render_clip(text="Buenos días.", voice=voice).pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then one request was billed and everyone got the same clip
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 6
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 1
    assert fake_elevenlabs.characters == len("Buenos días.")


@pytest.mark.django_db(transaction=True)
def test_a_line_rendered_outside_a_transaction_is_claimed_by_a_lone_insert(
    fake_elevenlabs,
) -> None:
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")

    with CaptureQueriesContext(connections["default"]) as queries:
        render_clip(text="Hasta luego.", voice=voice)

    # look the line up, claim it, mark it ready: no BEGIN ... COMMIT around the claim
    assert [query["sql"].split()[0] for query in queries.captured_queries] == [
        *("SELECT", "INSERT", "UPDATE")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_new_line_is_claimed_without_looking_it_up_first(fake_elevenlabs) -> None:
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")

    with CaptureQueriesContext(connections["default"]) as queries:
        clip = render_clip(text="Su cita 41 queda confirmada.", voice=voice, new_text=True)

    # a model's sentence: claimed at once, then marked ready
    assert [query["sql"].split()[0] for query in queries.captured_queries] == [
        *("INSERT", "UPDATE")
    ]
    assert clip.status == SpeechClip.Status.READY
    assert "ON CONFLICT" in queries.captured_queries[0]["sql"] or (
        "OR IGNORE" in queries.captured_queries[0]["sql"]
    )


def test_a_new_line_said_before_is_played_from_its_clip(fake_elevenlabs, bella) -> None:
    said = render_clip(text="¿Puedo ayudarle en algo más?", voice=bella, new_text=True)

    again = render_clip(text="¿Puedo ayudarle en algo más?", voice=bella, new_text=True)

    assert again.pk == said.pk
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 1  # billed once
    assert SpeechClip.objects.count() == 1


def test_a_claim_lost_inside_a_transaction_leaves_the_transaction_usable(
    fake_elevenlabs, bella
) -> None:
    clip = render_clip(text="Hola.", voice=bella)

    with transaction.atomic():
        lost = _claim_new(
            key=clip.key,
            text=clip.text,
            voice=bella,
            model_id=clip.model_id,
            voice_settings=clip.voice_settings,
            output_format=clip.output_format,
        )
        assert lost is None
        assert SpeechClip.objects.count() == 1  # still usable after the failed insert


def test_render_clip_failure_is_recorded_and_not_retried_during_cool_down(
    fake_elevenlabs, bella
) -> None:
    fake_elevenlabs.fail_next(503, times=10)

    with pytest.raises(ClipFailed):
        render_clip(text="Adiós.", voice=bella)
    with pytest.raises(ClipFailed):
        render_clip(text="Adiós.", voice=bella)

    clip = SpeechClip.objects.get()
    assert clip.status == SpeechClip.Status.FAILED
    assert "503" in clip.error_message or "attempt" in clip.error_message
    # the first call spent its retries; the second failed at once, without a request
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 4


def test_render_clip_failed_line_is_tried_again_after_cool_down(fake_elevenlabs, bella) -> None:
    fake_elevenlabs.fail_next(400, body={"detail": {"status": "x", "message": "Nope."}})
    with pytest.raises(ClipFailed, match="Nope"):
        render_clip(text="Adiós.", voice=bella)
    SpeechClip.objects.update(updated_at=timezone.now() - timedelta(minutes=5))

    clip = render_clip(text="Adiós.", voice=bella)

    assert clip.status == SpeechClip.Status.READY


def test_render_clip_takes_over_a_rendering_abandoned_by_a_dead_worker(
    fake_elevenlabs, bella
) -> None:
    # given a claim left by a worker that died mid-rendering long ago
    key = clip_key(
        text="Hola.",
        voice_id=BELLA_ID,
        model_id="eleven_multilingual_v2",
        voice_settings=bella.settings,
        output_format="mp3_22050_32",
    )
    SpeechClipFactory(
        key=key,
        text="Hola.",
        voice=bella,
        model_id="eleven_multilingual_v2",
        voice_settings=bella.settings,
        output_format="mp3_22050_32",
        rendering_started_at=timezone.now() - timedelta(hours=1),
    )

    clip = render_clip(text="Hola.", voice=bella)

    assert clip.status == SpeechClip.Status.READY
    assert SpeechClip.objects.count() == 1


def test_clip_audio_is_served_with_type_length_and_cache_headers(
    client, fake_elevenlabs, bella, settings
) -> None:
    clip = render_clip(text="Hola.", voice=bella)
    url = clip_url(clip)
    assert url.startswith(settings.APP_URL + "/clips/")
    assert clip.key not in url  # the content hash alone never finds a clip

    response = client.get(url.removeprefix(settings.APP_URL))

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert int(response["Content-Length"]) == clip.size_bytes
    assert "immutable" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == clip.audio.open("rb").read()
    revalidated = client.get(
        url.removeprefix(settings.APP_URL), headers={"if-none-match": response["ETag"]}
    )
    assert revalidated.status_code == 304
    assert client.head(url.removeprefix(settings.APP_URL)).status_code == 200


def test_clip_audio_unknown_or_unready_tokens_are_404(client, fake_elevenlabs, bella) -> None:
    fake_elevenlabs.fail_next(400)
    with pytest.raises(ClipFailed):
        render_clip(text="Hola.", voice=bella)
    failed = SpeechClip.objects.get()

    assert client.get(f"/clips/{failed.token}.mp3").status_code == 404
    assert client.get("/clips/not-a-token.mp3").status_code == 404
    assert client.post(f"/clips/{failed.token}.mp3").status_code == 405


def test_speech_for_line_plays_the_clip_when_it_can(fake_elevenlabs, bella) -> None:
    speech = speech_for_line(text="Hola.", voice=bella, language="es-ES")

    assert not speech.is_fallback
    assert speech.url == clip_url(SpeechClip.objects.get())
    assert (speech.text, speech.language) == ("Hola.", "es-ES")


def test_speech_for_line_falls_back_to_say_without_a_key(settings, bella) -> None:
    settings.ELEVENLABS_API_KEY = ""
    before = fallbacks("not_configured")

    speech = speech_for_line(text="Hola.", voice=bella, language="es-ES")

    assert speech.is_fallback and speech.fallback_reason == "not_configured"
    assert speech.language == "es-ES"
    assert fallbacks("not_configured") == before + 1


def test_speech_for_line_falls_back_when_the_provider_keeps_failing(fake_elevenlabs, bella) -> None:
    fake_elevenlabs.fail_next(500, times=10)
    before = fallbacks("provider_failed")

    speech = speech_for_line(text="Hola.", voice=bella, language="en-US")

    assert speech.is_fallback and speech.fallback_reason == "provider_failed"
    assert speech.text == "Hola." and speech.language == "en-US"
    assert fallbacks("provider_failed") == before + 1


def test_speech_for_line_falls_back_without_a_voice(fake_elevenlabs, db) -> None:
    speech = speech_for_line(text="Hola.", voice=None, language="es-ES")

    assert speech.fallback_reason == "no_voice"
    assert fake_elevenlabs.requests == []


# --- Two models: fast for live AI lines, quality for the rest -------------------------------


def test_live_ai_lines_use_the_fast_model_and_others_the_quality_one(
    fake_elevenlabs, bella, settings
) -> None:
    # when a template line and a model's sentence are spoken
    template_line = speech_for_line(text="Hola.", voice=bella, language="es-ES")
    live_line = speech_for_line(text="Claro, dígame.", voice=bella, language="es-ES", new_text=True)

    # then each was rendered with its model, and each clip says which
    models = {
        request.json["text"]: request.json["model_id"]
        for request in fake_elevenlabs.requests_to("/v1/text-to-speech")
    }
    assert models == {"Hola.": "eleven_multilingual_v2", "Claro, dígame.": "eleven_flash_v2_5"}
    assert SpeechClip.objects.get(pk=template_line.clip_id).model_id == "eleven_multilingual_v2"
    assert SpeechClip.objects.get(pk=live_line.clip_id).model_id == "eleven_flash_v2_5"


def test_the_live_model_is_a_setting(fake_elevenlabs, bella, settings) -> None:
    settings.ELEVENLABS_LIVE_MODEL = "eleven_turbo_v2_5"

    clip = render_clip(text="Perfecto.", voice=bella, new_text=True)

    assert clip.model_id == "eleven_turbo_v2_5"
    assert model_for(new_text=True) == "eleven_turbo_v2_5"
    assert model_for(new_text=False) == settings.ELEVENLABS_MODEL


def test_speech_names_the_clip_played_and_none_for_say(fake_elevenlabs, bella, settings) -> None:
    played = speech_for_line(text="Hola.", voice=bella, language="es-ES")
    settings.ELEVENLABS_API_KEY = ""
    said = speech_for_line(text="Hola.", voice=bella, language="es-ES")

    assert played.clip_id == SpeechClip.objects.get().pk
    assert said.clip_id is None and said.is_fallback


# --- The deadline of a live call ------------------------------------------------------------


def test_speech_for_line_falls_back_at_the_deadline(fake_elevenlabs, bella, settings) -> None:
    # given an ElevenLabs slower than the time the webhook has left
    settings.ELEVENLABS_TIMEOUT = 5.0
    fake_elevenlabs.delay = 3.0
    before = fallbacks("deadline")
    started = time.monotonic()

    # when
    spoken = speech_for_line(
        text="Un momento.", voice=bella, language="es-ES", deadline=started + 0.4
    )

    # then the caller hears <Say> in time, and the reason is the deadline
    assert time.monotonic() - started < 2.0  # not the seconds of the timeout or budget
    assert spoken.is_fallback and spoken.fallback_reason == "deadline"
    assert spoken.clip_id is None
    assert fallbacks("deadline") == before + 1
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 1  # no retry past it


def test_a_rendering_given_up_at_the_deadline_is_free_for_the_next_caller(
    fake_elevenlabs, bella, settings
) -> None:
    # given a line whose rendering was given up at a live call's deadline
    settings.ELEVENLABS_TIMEOUT = 5.0
    fake_elevenlabs.delay_next(3.0)
    with pytest.raises(ClipDeadlineExceeded):
        render_clip(text="Un momento.", voice=bella, deadline=time.monotonic() + 0.3)
    abandoned = SpeechClip.objects.get()
    assert (abandoned.status, abandoned.rendering_started_at) == ("rendering", None)

    # when the next caller wants it (no waiting for a stale claim, no failure cool-down)
    started = time.monotonic()
    clip = render_clip(text="Un momento.", voice=bella)

    # then it renders it at once, in the same row
    assert time.monotonic() - started < 2.0  # not the seconds of the timeout or budget
    assert (clip.pk, clip.status) == (abandoned.pk, SpeechClip.Status.READY)
    assert len(fake_elevenlabs.requests_to("/v1/text-to-speech")) == 2


def test_render_clip_waits_for_another_rendering_only_until_the_deadline(
    fake_elevenlabs, bella
) -> None:
    # given the line being rendered right now by another process
    key = clip_key(
        text="Hola.",
        voice_id=BELLA_ID,
        model_id="eleven_multilingual_v2",
        voice_settings=bella.settings,
        output_format="mp3_22050_32",
    )
    SpeechClipFactory(
        key=key,
        text="Hola.",
        voice=bella,
        model_id="eleven_multilingual_v2",
        voice_settings=bella.settings,
        output_format="mp3_22050_32",
        rendering_started_at=timezone.now(),
    )
    started = time.monotonic()

    # when a live call wants it with little time left
    spoken = speech_for_line(text="Hola.", voice=bella, language="es-ES", deadline=started + 0.3)

    # then it stops waiting at the deadline, and leaves the other's claim alone
    assert 0.25 <= time.monotonic() - started < 2.0
    assert spoken.fallback_reason == "deadline"
    assert fake_elevenlabs.requests == []
    assert SpeechClip.objects.get().rendering_started_at is not None


def test_a_ready_clip_is_played_whatever_the_deadline(fake_elevenlabs, bella) -> None:
    render_clip(text="Hola.", voice=bella)

    spoken = speech_for_line(text="Hola.", voice=bella, language="es", deadline=time.monotonic())

    assert not spoken.is_fallback
