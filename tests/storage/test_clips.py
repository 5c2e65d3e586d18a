"""Speech clips in an S3 bucket (moto's server, real boto3): stored there, served by our
clip view (CLIP_URLS=app) or fetched straight from the bucket (CLIP_URLS=signed)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID, fake_audio
from voices.clips import CACHE_CONTROL, clip_url, render_clip, speech_for_line
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def bella(db) -> Voice:
    return VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")


def test_a_rendered_clip_lands_in_the_bucket_and_the_clip_view_serves_it(
    client, s3, fake_elevenlabs, bella, settings
) -> None:
    # when a line is rendered
    clip = render_clip(text="Hola, le llamo de Demo.", voice=bella)

    # then its audio is an object of the bucket, byte for byte
    expected = fake_audio(text="Hola, le llamo de Demo.", voice_id=BELLA_ID)
    assert s3.keys() == [clip.audio.name]
    assert clip.audio.name == f"clips/{clip.token}.mp3"
    assert s3.read(clip.audio.name) == expected
    head = s3.client().head_object(Bucket=s3.bucket, Key=clip.audio.name)
    assert head["ContentType"] == "audio/mpeg"

    # and Twilio's <Play> URL is our view, which streams it from the bucket
    url = clip_url(clip)
    assert url.startswith(settings.APP_URL + "/clips/")
    response = client.get(url.removeprefix(settings.APP_URL))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == expected
    assert response["Content-Type"] == "audio/mpeg"
    assert int(response["Content-Length"]) == len(expected)
    assert response["Cache-Control"] == CACHE_CONTROL
    revalidated = client.get(
        url.removeprefix(settings.APP_URL), headers={"if-none-match": response["ETag"]}
    )
    assert revalidated.status_code == 304


def test_a_signed_clip_url_is_fetched_from_the_bucket_with_the_configured_expiry(
    s3, fake_elevenlabs, bella, settings
) -> None:
    # given signed clip URLs valid for five hours
    settings.CLIP_URLS = "signed"
    settings.CLIP_SIGNED_URL_SECONDS = 5 * 3600

    # when a line is spoken
    speech = speech_for_line(text="Hola.", voice=bella, language="es-ES")

    # then its URL is the bucket's, presigned (SigV4) for the configured time
    clip = SpeechClip.objects.get()
    assert speech.url.startswith(f"{s3.endpoint_url}/{s3.bucket}/clips/{clip.token}.mp3?")
    query = parse_qs(urlsplit(speech.url).query)
    assert query["X-Amz-Expires"] == [str(5 * 3600)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # and fetched over HTTP, as Twilio would, it answers the audio with its cache headers
    fetched = requests.get(speech.url, timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == fake_audio(text="Hola.", voice_id=BELLA_ID)
    assert fetched.headers["Content-Type"] == "audio/mpeg"
    assert fetched.headers["Cache-Control"] == CACHE_CONTROL
    # and without its signature the bucket refuses it: the bucket stays private
    unsigned = requests.get(speech.url.split("?")[0], timeout=10)
    assert unsigned.status_code == 403


def test_a_signed_clip_url_is_reused_while_it_outlives_a_call(
    s3, fake_elevenlabs, bella, settings
) -> None:
    # Twilio caches <Play> audio by URL: the same clip keeps its URL while it has a call's
    # lifetime (4 h) left, and a URL that could expire during a call is never reused.
    settings.CLIP_URLS = "signed"
    clip = render_clip(text="Hola.", voice=bella)

    settings.CLIP_SIGNED_URL_SECONDS = 7 * 24 * 3600
    first = clip_url(clip)
    assert clip_url(clip) == first

    settings.CLIP_SIGNED_URL_SECONDS = 4 * 3600
    from django.core.cache import cache

    cache.clear()
    short = clip_url(clip)
    assert "X-Amz-Expires=14400" in short
    assert cache.get(f"voices:clip-url:{clip.token}") is None
