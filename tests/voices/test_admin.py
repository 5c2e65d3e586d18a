"""The voice admin's sync action, which also runs with nothing selected."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.fakes.elevenlabs import BELLA_ID
from voices.clips import render_clip
from voices.models import Voice

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:voices_voice_changelist")
# The messages are checked in English whatever the project's default language.
ENGLISH = {"accept-language": "en"}


def run_sync(client, *, selected: list[int] | None = None):
    data = {"action": "sync_voices", "index": "0", "select_across": "0"}
    if selected:
        data["_selected_action"] = [str(pk) for pk in selected]
    return client.post(CHANGELIST, data, headers=ENGLISH)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_voice_changelist_offers_sync_when_catalogue_is_empty(admin_client) -> None:
    response = admin_client.get(CHANGELIST, headers=ENGLISH)

    assert response.status_code == 200
    assert '<option value="sync_voices">Sync voices from ElevenLabs</option>' in (
        response.content.decode()
    )


def test_voice_admin_sync_with_no_selection_syncs_and_reports(
    admin_client, fake_elevenlabs
) -> None:
    # when staff run the action on the empty changelist
    response = run_sync(admin_client)

    # then the catalogue is synced and the counts are shown on the changelist
    assert response.status_code == 302
    assert response.url == CHANGELIST
    assert Voice.objects.count() == 2
    assert messages_of(response) == [
        "Voices synced from ElevenLabs: 2 created, 0 updated, 0 unchanged, 0 no longer listed."
    ]


def test_voice_admin_sync_with_a_selection_syncs_everything(admin_client, fake_elevenlabs) -> None:
    bella = Voice.objects.create(provider_voice_id=BELLA_ID, name="Old name")

    response = run_sync(admin_client, selected=[bella.pk])

    assert response.status_code == 302
    assert messages_of(response) == [
        "Voices synced from ElevenLabs: 1 created, 1 updated, 0 unchanged, 0 no longer listed."
    ]
    bella.refresh_from_db()
    assert bella.name == "Bella"


def test_voice_admin_sync_without_key_says_so(admin_client, fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = ""

    response = run_sync(admin_client)

    assert messages_of(response) == [
        "ElevenLabs is not configured: set ELEVENLABS_API_KEY to sync voices."
    ]
    assert fake_elevenlabs.requests == []


def test_voice_admin_sync_shows_provider_refusal(admin_client, fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = "revoked"

    response = run_sync(admin_client)

    assert messages_of(response) == [
        "ElevenLabs refused the voice listing (HTTP 401): Invalid API key"
    ]
    assert not Voice.objects.exists()


def test_voice_admin_sync_shows_unavailability(admin_client, fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_MAX_RETRIES = 1
    fake_elevenlabs.fail_next(status=503, times=5)

    response = run_sync(admin_client)

    (message,) = messages_of(response)
    assert message.startswith("ElevenLabs is unavailable, try again later")
    assert "after 2 attempt(s)" in message


def test_voice_admin_sync_needs_add_and_change_permission(
    client, django_user_model, fake_elevenlabs
) -> None:
    # given staff who may change voices but not add them
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_voice"),
        Permission.objects.get(codename="change_voice"),
    )
    client.force_login(user)

    # when they try the action anyway
    page = client.get(CHANGELIST, headers=ENGLISH)
    response = run_sync(client)

    # then it is neither offered nor run
    assert 'value="sync_voices"' not in page.content.decode()
    assert response.status_code in (200, 302)
    assert fake_elevenlabs.requests == []
    assert not Voice.objects.exists()


def test_speech_clip_admin_plays_ready_clips(admin_client, fake_elevenlabs) -> None:
    voice = Voice.objects.create(provider_voice_id=BELLA_ID, name="Bella")
    clip = render_clip(text="Hola.", voice=voice)

    page = admin_client.get(f"/admin/voices/speechclip/{clip.pk}/change/").content.decode()

    assert f'<audio controls preload="none" src="/clips/{clip.token}.mp3">' in page
    assert admin_client.get("/admin/voices/speechclip/add/").status_code == 403
