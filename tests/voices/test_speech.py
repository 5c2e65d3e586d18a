"""The ElevenLabs adapter, driving the real SDK over HTTP against the local fake."""

from __future__ import annotations

import datetime
import re
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from callcenter.backoff import BACKOFF_CAP
from tests.fakes.elevenlabs import (
    ANTONI_ID,
    BELLA_ID,
    GEORGE_ID,
    FakeElevenLabs,
    fake_audio,
    latency_by_model,
)
from voices import concurrency, speech

ROOT = Path(__file__).resolve().parents[2]


def test_synthesize_sends_text_voice_model_settings_and_format(fake_elevenlabs) -> None:
    # when
    audio = speech.synthesize(
        text="Hola, ¿hablo con Ana?",
        voice_id=BELLA_ID,
        model_id="eleven_flash_v2_5",
        voice_settings={"stability": 0.3, "similarity_boost": 0.8},
    )

    # then the request is ElevenLabs' text-to-speech call, authenticated
    (request,) = fake_elevenlabs.requests
    assert (request.method, request.path) == ("POST", f"/v1/text-to-speech/{BELLA_ID}")
    assert request.query == {"output_format": ["mp3_22050_32"]}
    assert request.headers["xi-api-key"] == "test-key"
    assert request.json == {
        "text": "Hola, ¿hablo con Ana?",
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.3, "similarity_boost": 0.8},
    }
    # and the audio comes back as plain values
    assert audio == speech.Audio(
        content=fake_audio(text="Hola, ¿hablo con Ana?", voice_id=BELLA_ID),
        content_type="audio/mpeg",
        characters=len("Hola, ¿hablo con Ana?"),
    )
    assert fake_elevenlabs.characters == len("Hola, ¿hablo con Ana?")


def test_synthesize_defaults_to_configured_model_and_voice_settings(
    fake_elevenlabs, settings
) -> None:
    settings.ELEVENLABS_MODEL = "eleven_turbo_v2_5"

    speech.synthesize(text="Hola", voice_id=ANTONI_ID)

    (request,) = fake_elevenlabs.requests
    assert request.json == {"text": "Hola", "model_id": "eleven_turbo_v2_5"}


def test_synthesize_other_output_format_is_requested_and_typed(fake_elevenlabs) -> None:
    audio = speech.synthesize(text="Hola", voice_id=BELLA_ID, output_format="ulaw_8000")

    assert fake_elevenlabs.requests[0].query == {"output_format": ["ulaw_8000"]}
    assert audio.content_type == "audio/basic"


def test_synthesize_blank_text_is_rejected_without_request(fake_elevenlabs) -> None:
    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.synthesize(text="  \n", voice_id=BELLA_ID)

    assert excinfo.value.status_code == 0
    assert fake_elevenlabs.requests == []


def test_output_format_is_one_the_sdk_knows() -> None:
    from elevenlabs.text_to_speech.types import TextToSpeechConvertRequestOutputFormat

    # Literal[...] | Any: the Literal lists the formats
    known, _ = typing.get_args(TextToSpeechConvertRequestOutputFormat)
    assert speech.OUTPUT_FORMAT in typing.get_args(known)
    assert speech.CONTENT_TYPE == "audio/mpeg"


def test_list_voices_returns_plain_voices(fake_elevenlabs) -> None:
    voices = speech.list_voices()

    (request,) = fake_elevenlabs.requests
    assert (request.method, request.path) == ("GET", "/v2/voices")
    assert request.headers["xi-api-key"] == "test-key"
    sarah, george = voices
    assert sarah == speech.ProviderVoice(
        voice_id=BELLA_ID,
        name="Sarah",  # the voice the deployment guide calls Bella
        language="es",  # from its verified languages
        labels={"accent": "castilian", "gender": "female"},
        preview_url=f"https://storage.googleapis.com/eleven-public-prod/premade/voices/{BELLA_ID}/preview.mp3",
        settings={
            "stability": 0.5,
            "similarity_boost": 0.75,
            "style": 0.0,
            "use_speaker_boost": True,
            "speed": 1.0,
        },
    )
    assert (george.voice_id, george.language, george.settings) == (GEORGE_ID, "en", {})


def test_list_voices_language_falls_back_to_fine_tuning_then_empty(fake_elevenlabs) -> None:
    fake_elevenlabs.voices = [
        {"voice_id": "tuned", "name": "Tuned", "fine_tuning": {"language": "pt"}},
        {"voice_id": "bare", "name": None, "labels": None, "preview_url": None},
    ]

    tuned, bare = speech.list_voices()

    assert tuned.language == "pt"
    assert (bare.name, bare.language, bare.labels, bare.preview_url) == ("bare", "", {}, "")


def test_list_voices_tolerates_malformed_voices(fake_elevenlabs, caplog) -> None:
    # the SDK's models are unchecked: wrong shapes reach the adapter as they are
    fake_elevenlabs.voices = [
        {"voice_id": "odd", "name": 5, "labels": "x", "settings": "y", "verified_languages": 1},
        {"name": "No id"},
    ]

    (odd,) = speech.list_voices()

    assert odd == speech.ProviderVoice(voice_id="odd", name="odd", language="")
    assert "without an id" in caplog.text


def test_list_voices_retries_an_unreadable_success(fake_elevenlabs) -> None:
    fake_elevenlabs.fail_next(status=200, body="<html>captive portal</html>")

    assert len(speech.list_voices()) == 2
    assert len(fake_elevenlabs.requests) == 2


def test_list_voices_follows_every_page(fake_elevenlabs) -> None:
    # given more voices than one page holds
    fake_elevenlabs.voices = [{"voice_id": f"v{i:03}", "name": f"V{i}"} for i in range(150)]

    # when
    voices = speech.list_voices()

    # then both pages were read, the second with the first one's token
    assert [v.voice_id for v in voices] == [f"v{i:03}" for i in range(150)]
    first, second = fake_elevenlabs.requests
    assert first.query["page_size"] == ["100"] and "next_page_token" not in first.query
    assert second.query["next_page_token"] == ["100"]


def test_synthesize_retries_429_after_its_retry_after(fake_elevenlabs, caplog) -> None:
    fake_elevenlabs.fail_next(status=429, times=2, headers={"Retry-After": "3"})

    audio = speech.synthesize(text="Hola", voice_id=BELLA_ID)

    assert audio.content == fake_audio(text="Hola", voice_id=BELLA_ID)
    assert len(fake_elevenlabs.requests) == 3
    assert fake_elevenlabs.sleeps == [3.0, 3.0]
    retries = [r for r in caplog.records if r.name == "voices.speech"]
    assert [r.levelname for r in retries] == ["WARNING", "WARNING"]
    assert "attempt 1 of 4" in retries[0].getMessage()


def test_synthesize_caps_a_long_retry_after(fake_elevenlabs) -> None:
    fake_elevenlabs.fail_next(status=429, headers={"Retry-After": "600"})

    speech.synthesize(text="Hola", voice_id=BELLA_ID)

    assert fake_elevenlabs.sleeps == [BACKOFF_CAP]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_synthesize_retries_server_errors_with_backoff(fake_elevenlabs, status) -> None:
    fake_elevenlabs.fail_next(status=status, times=2)

    speech.synthesize(text="Hola", voice_id=BELLA_ID)

    assert len(fake_elevenlabs.requests) == 3
    first, second = fake_elevenlabs.sleeps
    # exponential steps of 0.5 s and 1 s, each with up to half of it as jitter
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


def test_list_voices_retries_a_proxy_error_page(fake_elevenlabs) -> None:
    fake_elevenlabs.fail_next(status=502, body="<html><h1>502 Bad Gateway</h1></html>")

    assert len(speech.list_voices()) == 2
    assert len(fake_elevenlabs.requests) == 2


def test_synthesize_retries_after_a_timeout(fake_elevenlabs, settings) -> None:
    # given a first answer slower than the timeout
    settings.ELEVENLABS_TIMEOUT = 0.2
    fake_elevenlabs.delay_next(1.0)

    # when
    audio = speech.synthesize(text="Hola", voice_id=BELLA_ID)

    # then the second attempt brought the audio
    assert audio.content == fake_audio(text="Hola", voice_id=BELLA_ID)
    assert len(fake_elevenlabs.requests) == 2
    assert len(fake_elevenlabs.sleeps) == 1


def test_synthesize_exhausted_retries_raise_unavailable(fake_elevenlabs, settings) -> None:
    # given a provider down for longer than the retries last
    settings.ELEVENLABS_MAX_RETRIES = 2
    fake_elevenlabs.fail_next(status=503, times=10)

    # when
    with pytest.raises(speech.SpeechUnavailable) as excinfo:
        speech.synthesize(text="Hola", voice_id=BELLA_ID)

    # then it was tried 1 + 2 times and says so
    assert excinfo.value.attempts == 3
    assert excinfo.value.status_code == 503
    assert "after 3 attempt(s)" in str(excinfo.value)
    assert "HTTP 503" in str(excinfo.value)
    assert len(fake_elevenlabs.requests) == 3
    assert len(fake_elevenlabs.sleeps) == 2


def test_list_voices_unreachable_host_is_unavailable(fake_elevenlabs, settings, closed_port):
    settings.ELEVENLABS_BASE_URL = f"http://127.0.0.1:{closed_port}"
    settings.ELEVENLABS_MAX_RETRIES = 1

    with pytest.raises(speech.SpeechUnavailable) as excinfo:
        speech.list_voices()

    assert excinfo.value.attempts == 2
    assert excinfo.value.status_code is None
    assert "ConnectError" in str(excinfo.value)


def test_synthesize_without_retries_tries_once(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_MAX_RETRIES = 0
    fake_elevenlabs.fail_next(status=500)

    with pytest.raises(speech.SpeechUnavailable):
        speech.synthesize(text="Hola", voice_id=BELLA_ID)

    assert len(fake_elevenlabs.requests) == 1
    assert fake_elevenlabs.sleeps == []


@pytest.mark.parametrize(
    ("case", "status", "provider_message"),
    [
        ("wrong key", 401, "Invalid API key"),
        ("unknown voice", 404, "A voice with the voice_id nope was not found."),
        ("text too long", 400, "Text is too long: 11 characters, the limit is 10."),
    ],
)
def test_synthesize_permanent_errors_are_rejected_once(
    fake_elevenlabs, settings, case, status, provider_message
) -> None:
    # given
    voice_id = BELLA_ID
    text = "Hola"
    if case == "wrong key":
        settings.ELEVENLABS_API_KEY = "not-the-key"
    elif case == "unknown voice":
        voice_id = "nope"
    else:
        fake_elevenlabs.max_characters = 10
        text = "Hola, Ana: "

    # when
    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.synthesize(text=text, voice_id=voice_id)

    # then the provider's own words are kept, and nothing was retried
    assert excinfo.value.status_code == status
    assert excinfo.value.provider_message == provider_message
    assert f"HTTP {status}" in str(excinfo.value) and provider_message in str(excinfo.value)
    assert len(fake_elevenlabs.requests) == 1
    assert fake_elevenlabs.sleeps == []


@pytest.mark.parametrize(
    ("body", "provider_message"),
    [
        ({"detail": "Voice settings are invalid"}, "Voice settings are invalid"),
        ({"detail": {"status": "quota_exceeded"}}, "quota_exceeded"),
        (
            {"detail": [{"loc": ["body", "text"], "msg": "Field required"}]},
            "Field required",
        ),
        ("<html>Forbidden</html>", "<html>Forbidden</html>"),
    ],
)
def test_list_voices_rejection_reads_every_error_shape(
    fake_elevenlabs, body, provider_message
) -> None:
    fake_elevenlabs.fail_next(status=422 if isinstance(body, dict) else 403, body=body)

    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.list_voices()

    assert excinfo.value.provider_message == provider_message
    assert len(fake_elevenlabs.requests) == 1


def test_not_configured_raises_without_any_request(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = ""

    assert speech.is_configured() is False
    with pytest.raises(speech.SpeechNotConfigured) as excinfo:
        speech.synthesize(text="Hola", voice_id=BELLA_ID)
    with pytest.raises(speech.SpeechRejected):
        speech.list_voices()

    assert "ELEVENLABS_API_KEY" in str(excinfo.value)
    assert fake_elevenlabs.requests == []


def test_is_configured_with_a_key(settings) -> None:
    settings.ELEVENLABS_API_KEY = "sk-something"

    assert speech.is_configured() is True


def test_speech_is_the_only_module_importing_the_sdk() -> None:
    importing = {
        path.relative_to(ROOT).as_posix()
        for folder in ("callcenter", "calls", "campaigns", "templates", "voices")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+elevenlabs\b", path.read_text(), re.MULTILINE)
    }

    assert importing == {"voices/speech.py"}


# --- One voice by id ---------------------------------------------------------------------


def test_get_voice_fetches_one_voice_even_unlisted(fake_elevenlabs) -> None:
    voice = speech.get_voice(voice_id=ANTONI_ID)

    (request,) = fake_elevenlabs.requests
    assert (request.method, request.path) == ("GET", f"/v1/voices/{ANTONI_ID}")
    assert (voice.voice_id, voice.name, voice.language) == (ANTONI_ID, "Antoni", "en")


def test_get_voice_unknown_id_is_rejected_with_404(fake_elevenlabs) -> None:
    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.get_voice(voice_id="NoSuchVoice000000000")

    assert excinfo.value.status_code == 404
    assert "was not found" in excinfo.value.provider_message


# --- The subscription --------------------------------------------------------------------


def test_get_subscription_reads_the_characters_and_their_reset(fake_elevenlabs) -> None:
    fake_elevenlabs.characters = 500  # rendered this period, besides the plan's count

    subscription = speech.get_subscription()

    (request,) = fake_elevenlabs.requests
    assert (request.method, request.path) == ("GET", "/v1/user/subscription")
    assert subscription.tier == "creator" and subscription.status == "active"
    assert (subscription.character_count, subscription.character_limit) == (12_500, 100_000)
    assert subscription.characters_left == 87_500
    assert subscription.next_reset == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_get_subscription_with_a_key_restricted_says_which_permission_lacks(
    fake_elevenlabs,
) -> None:
    fake_elevenlabs.permissions = {"text_to_speech"}

    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.get_subscription()

    assert excinfo.value.status_code == 401
    assert excinfo.value.is_missing_permission
    assert "user_read" in excinfo.value.provider_message


def test_invalid_key_is_not_a_missing_permission(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = "wrong"

    with pytest.raises(speech.SpeechRejected) as excinfo:
        speech.get_subscription()

    assert excinfo.value.provider_status == "invalid_api_key"
    assert not excinfo.value.is_missing_permission


def test_get_subscription_without_counts_is_unavailable(fake_elevenlabs) -> None:
    del fake_elevenlabs.subscription["character_count"]

    with pytest.raises(speech.SpeechUnavailable):
        speech.get_subscription()


# --- The deadline ------------------------------------------------------------------------


def test_synthesize_gives_up_at_the_deadline_not_the_timeout(fake_elevenlabs, settings) -> None:
    # given an ElevenLabs slower than the time left, whose timeout alone would wait longer
    settings.ELEVENLABS_TIMEOUT = 5.0
    fake_elevenlabs.delay = 3.0
    started = time.monotonic()

    # when
    with pytest.raises(speech.SpeechDeadlineExceeded) as excinfo:
        speech.synthesize(text="Hola", voice_id=BELLA_ID, deadline=started + 0.4)

    # then the attempt was cut to the time left, and no other was started
    assert time.monotonic() - started < 2.0  # not the seconds of the timeout or budget
    assert len(fake_elevenlabs.requests) == 1
    assert excinfo.value.attempts == 1
    assert "deadline" in str(excinfo.value) and "Timeout" in str(excinfo.value)


def test_synthesize_waits_no_back_off_past_the_deadline(fake_elevenlabs) -> None:
    # given a 429 asking for a wait longer than the time left
    fake_elevenlabs.fail_next(429, headers={"Retry-After": "5"})

    with pytest.raises(speech.SpeechDeadlineExceeded) as excinfo:
        speech.synthesize(text="Hola", voice_id=BELLA_ID, deadline=time.monotonic() + 2.0)

    # then it gave up at once instead of waiting, and said why
    assert fake_elevenlabs.sleeps == []
    assert len(fake_elevenlabs.requests) == 1
    assert excinfo.value.status_code == 429


def test_synthesize_retries_within_the_deadline(fake_elevenlabs) -> None:
    fake_elevenlabs.fail_next(503)

    audio = speech.synthesize(text="Hola", voice_id=BELLA_ID, deadline=time.monotonic() + 5.0)

    assert audio.content == fake_audio(text="Hola", voice_id=BELLA_ID)
    assert len(fake_elevenlabs.requests) == 2
    assert len(fake_elevenlabs.sleeps) == 1


def test_synthesize_past_its_deadline_sends_nothing(fake_elevenlabs) -> None:
    with pytest.raises(speech.SpeechDeadlineExceeded):
        speech.synthesize(text="Hola", voice_id=BELLA_ID, deadline=time.monotonic() - 1)

    assert fake_elevenlabs.requests == []


# --- The account's concurrency limit -------------------------------------------------------


def test_synthesize_waits_for_a_slot_only_until_the_deadline(fake_elevenlabs, settings) -> None:
    # given the account's only slot held elsewhere
    settings.ELEVENLABS_CONCURRENCY = 1
    held = concurrency.acquire(until=time.monotonic() + 1)
    assert held is not None
    started = time.monotonic()
    try:
        # when
        with pytest.raises(speech.SpeechDeadlineExceeded) as excinfo:
            speech.synthesize(text="Hola", voice_id=BELLA_ID, deadline=started + 0.3)
    finally:
        held.release()

    # then it waited for the slot until the deadline, and sent nothing
    assert 0.25 <= time.monotonic() - started < 2.0
    assert fake_elevenlabs.requests == []
    assert "ELEVENLABS_CONCURRENCY" in str(excinfo.value)


def test_every_request_holds_a_slot_while_it_runs(fake_elevenlabs, settings) -> None:
    # given a limit of 2 and eight lines and listings wanted at once from a slow provider
    settings.ELEVENLABS_CONCURRENCY = 2
    fake_elevenlabs.delay = 0.15
    fake_elevenlabs.max_concurrent = 2  # a plan's limit: over it, 429

    def work(number: int) -> None:
        if number % 4 == 0:
            speech.list_voices()
        else:
            speech.synthesize(text=f"Línea {number}", voice_id=BELLA_ID)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))

    # then never more than 2 were in flight, and ElevenLabs never had to refuse one
    assert fake_elevenlabs.max_in_flight == 2
    assert fake_elevenlabs.concurrency_rejections == 0
    assert len(fake_elevenlabs.requests) == 8


def test_fake_answers_429_over_its_concurrency_limit(fake_elevenlabs, settings) -> None:
    # given no limit of ours, a plan allowing one request at a time, and two at once
    settings.ELEVENLABS_CONCURRENCY = 0
    settings.ELEVENLABS_MAX_RETRIES = 0
    fake_elevenlabs.max_concurrent = 1
    fake_elevenlabs.delay = 0.3

    def work(number: int) -> str:
        try:
            speech.synthesize(text=f"Línea {number}", voice_id=BELLA_ID)
        except speech.SpeechUnavailable as exc:
            return f"{exc.status_code}: {exc}"
        return "ok"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(work, range(2)))

    # then one was refused with ElevenLabs' own status and words, and counted
    assert outcomes[1] == "ok"
    assert outcomes[0].startswith("429: ") and "Too many concurrent requests" in outcomes[0]
    assert fake_elevenlabs.concurrency_rejections == 1
    body = httpx.get(f"{fake_elevenlabs.url}/v1/voices", headers={"xi-api-key": "test-key"}).json()
    assert "voices" in body  # a request alone is served again


def test_fake_concurrency_error_body_is_elevenlabs_own(fake_elevenlabs) -> None:
    fake_elevenlabs.max_concurrent = 0  # every request is over the limit

    response = httpx.get(f"{fake_elevenlabs.url}/v1/voices", headers={"xi-api-key": "test-key"})

    assert response.status_code == 429
    assert response.json()["detail"]["status"] == "too_many_concurrent_requests"
    assert fake_elevenlabs.concurrency_rejections == 1


def test_fake_random_failures_are_seeded() -> None:
    def statuses(seed: int) -> list[int]:
        with FakeElevenLabs(failure_rate=0.5, seed=seed) as fake:
            with httpx.Client(base_url=fake.url, headers={"xi-api-key": "test-key"}) as client:
                answers = [client.get("/v1/voices").status_code for _ in range(20)]
            assert fake.random_failures == sum(status != 200 for status in answers)
            return answers

    first = statuses(7)

    assert first == statuses(7)
    assert set(first) - {200} <= {429, 500, 503} and 200 in first and len(set(first)) > 1


def test_fake_latency_can_depend_on_the_model(settings) -> None:
    fake = FakeElevenLabs(delay=latency_by_model({"slow_model": 0.3}))
    with fake:
        settings.ELEVENLABS_BASE_URL = fake.url
        settings.ELEVENLABS_API_KEY = "test-key"
        started = time.monotonic()
        speech.synthesize(text="Hola", voice_id=BELLA_ID, model_id="fast_model")
        fast = time.monotonic() - started
        started = time.monotonic()
        speech.synthesize(text="Hola", voice_id=BELLA_ID, model_id="slow_model")
        slow = time.monotonic() - started

    assert fast < 0.3 <= slow
