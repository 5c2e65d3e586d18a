"""The partner API's voice catalogue: read by every partner, synced on demand by staff."""

from __future__ import annotations

import pytest

from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from voices.models import Voice
from voices.tasks import sync_voices_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def voices(db: None) -> list[Voice]:
    return [
        VoiceFactory(provider_voice_id=BELLA_ID, name="Bella", language="es"),
        VoiceFactory(provider_voice_id="v-adam", name="Adam", language="en"),
    ]


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    """What the sync would have queued (on the broker) once its transaction commits."""
    calls: list[tuple] = []
    monkeypatch.setattr(sync_voices_task, "delay", lambda *args: calls.append(args))
    return calls


def test_every_partner_reads_the_whole_catalogue(api_client, other_api_client, voices) -> None:
    for client in (api_client, other_api_client):
        response = client.get("/api/v1/voices/")

        assert response.status_code == 200
        assert [voice["name"] for voice in response.json()["results"]] == ["Adam", "Bella"]


def test_staff_read_the_catalogue(staff_api_client, voices) -> None:
    assert staff_api_client.get("/api/v1/voices/").json()["count"] == 2


def test_voice_detail(api_client, voices) -> None:
    bella = voices[0]

    response = api_client.get(f"/api/v1/voices/{bella.pk}/")

    assert response.status_code == 200
    assert response.json()["provider_voice_id"] == BELLA_ID
    assert response.json()["language"] == "es"


def test_voices_filter_by_language(api_client, voices) -> None:
    response = api_client.get("/api/v1/voices/", {"language": "en"})

    assert [voice["name"] for voice in response.json()["results"]] == ["Adam"]


def test_voices_cannot_be_written_through_the_api(api_client, voices) -> None:
    assert api_client.post("/api/v1/voices/", {"name": "X"}, format="json").status_code == 405
    assert api_client.delete(f"/api/v1/voices/{voices[0].pk}/").status_code == 405
    assert Voice.objects.count() == 2


def test_voices_need_credentials(client, voices) -> None:
    assert client.get("/api/v1/voices/").status_code == 401


def test_staff_sync_queues_the_task_after_commit(
    staff_api_client, fake_elevenlabs, queued, django_capture_on_commit_callbacks
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_api_client.post("/api/v1/voices/sync/")

    # then it is accepted, and queued only once the transaction commits
    assert response.status_code == 202
    assert response.json()["message"]
    assert queued == []
    for callback in callbacks:
        callback()
    assert queued == [()]


def test_the_queued_sync_fills_the_catalogue(
    staff_api_client, fake_elevenlabs, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    # given a worker that runs what is queued
    monkeypatch.setattr(sync_voices_task, "delay", sync_voices_task)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        staff_api_client.post("/api/v1/voices/sync/")

    # then the account's voices are listed
    names = {voice["name"] for voice in staff_api_client.get("/api/v1/voices/").json()["results"]}
    assert BELLA_ID in set(Voice.objects.values_list("provider_voice_id", flat=True))
    assert len(names) == 2


def test_partners_cannot_sync(
    api_client, fake_elevenlabs, queued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/v1/voices/sync/")

    assert response.status_code == 403
    assert queued == []


def test_sync_without_speech_configured_is_unavailable(
    staff_api_client, settings, queued, django_capture_on_commit_callbacks
) -> None:
    settings.ELEVENLABS_API_KEY = ""

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api_client.post("/api/v1/voices/sync/")

    assert response.status_code == 503
    assert response.json()["code"] == "speech_not_configured"
    assert queued == []
