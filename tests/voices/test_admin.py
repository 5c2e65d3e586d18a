"""The voice admin: the sync (also with nothing selected), previews and the default voice."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import ANTONI_ID, BELLA_ID
from voices.clips import render_clip
from voices.models import Voice
from voices.services import resolve_default_voice

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
    bella = VoiceFactory(provider_voice_id=BELLA_ID, name="Old name")

    response = run_sync(admin_client, selected=[bella.pk])

    assert response.status_code == 302
    assert messages_of(response) == [
        "Voices synced from ElevenLabs: 1 created, 1 updated, 0 unchanged, 0 no longer listed."
    ]
    bella.refresh_from_db()
    assert bella.name == "Sarah"  # today's name of the voice the guide called Bella


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
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    clip = render_clip(text="Hola.", voice=voice)

    page = admin_client.get(f"/admin/voices/speechclip/{clip.pk}/change/").content.decode()

    assert f'<audio controls preload="none" src="/clips/{clip.token}.mp3">' in page
    assert admin_client.get("/admin/voices/speechclip/add/").status_code == 403


# --- The changelist's button, players and default voice -------------------------------------


def test_voice_changelist_has_a_sync_button_that_runs_the_sync(
    admin_client, fake_elevenlabs
) -> None:
    # given the button on the empty changelist
    page = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()
    assert '<button type="submit" id="voice-sync-button">Sync from ElevenLabs</button>' in page

    # when staff press it (it posts just the action)
    response = admin_client.post(CHANGELIST, {"action": "sync_voices"}, headers=ENGLISH)

    # then the catalogue is synced and the counts shown
    assert response.status_code == 302
    assert Voice.objects.count() == 2
    assert messages_of(response)[0].startswith("Voices synced from ElevenLabs: 2 created")


def test_voice_changelist_hides_the_sync_button_without_permission(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_voice"))
    client.force_login(user)

    page = client.get(CHANGELIST, headers=ENGLISH).content.decode()

    assert 'id="voice-sync-button"' not in page


def test_voice_changelist_plays_previews(admin_client) -> None:
    VoiceFactory(
        provider_voice_id=BELLA_ID, name="Bella", preview_url="https://example.com/bella.mp3"
    )

    page = admin_client.get(CHANGELIST).content.decode()

    assert (
        '<audio class="voice-preview" controls preload="none" '
        'src="https://example.com/bella.mp3"></audio>'
    ) in page


def make_default(client, *voices: Voice):
    return client.post(
        CHANGELIST,
        {
            "action": "make_default",
            "index": "0",
            "select_across": "0",
            "_selected_action": [str(voice.pk) for voice in voices],
        },
        headers=ENGLISH,
    )


def test_voice_admin_makes_the_selected_voice_the_default(admin_client, settings) -> None:
    # given the setting names Bella, and Antoni is synced too
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    bella = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    antoni = VoiceFactory(provider_voice_id=ANTONI_ID, name="Antoni")
    before = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()

    # when staff make Antoni the default
    response = make_default(admin_client, antoni)

    # then Antoni is the default, and the page says it was chosen here
    assert messages_of(response) == ["Antoni is now the default voice of campaigns that name none."]
    assert resolve_default_voice() == antoni
    assert list(Voice.objects.filter(is_default=True)) == [antoni]
    assert "<strong>Bella</strong>, named by the ELEVENLABS_DEFAULT_VOICE setting" in before
    after = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()
    assert "<strong>Antoni</strong>, chosen here" in after
    assert bella.pk != antoni.pk


def test_voice_admin_default_needs_exactly_one_voice(admin_client) -> None:
    bella = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    antoni = VoiceFactory(provider_voice_id=ANTONI_ID, name="Antoni")

    response = make_default(admin_client, bella, antoni)

    assert messages_of(response) == ["Choose exactly one voice to make the default."]
    assert not Voice.objects.filter(is_default=True).exists()


def test_voice_admin_default_needs_change_permission(client, django_user_model) -> None:
    # given staff who may only view voices
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_voice"))
    client.force_login(user)
    bella = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")

    # when they try the action anyway
    page = client.get(CHANGELIST).content.decode()
    make_default(client, bella)

    # then it is neither offered nor run
    assert 'value="make_default"' not in page
    assert not Voice.objects.filter(is_default=True).exists()


def test_voice_change_page_shows_default_and_preview_read_only(admin_client) -> None:
    voice = VoiceFactory(
        provider_voice_id=BELLA_ID, name="Bella", preview_url="https://example.com/bella.mp3"
    )

    page = admin_client.get(f"/admin/voices/voice/{voice.pk}/change/").content.decode()

    assert 'name="is_default"' not in page
    assert 'class="voice-preview"' in page


# --- A default voice that resolves to nothing ---------------------------------------------


def warnings_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]


@pytest.fixture
def unresolved_default(settings) -> str:
    """ElevenLabs configured, and a default voice that names no voice of the catalogue."""
    settings.ELEVENLABS_API_KEY = "key"
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"
    return "Bellla"


def test_voice_changelist_warns_of_a_default_voice_that_resolves_to_nothing(
    admin_client, unresolved_default
) -> None:
    response = admin_client.get(CHANGELIST, headers=ENGLISH)

    (warning,) = warnings_of(response)
    assert "ELEVENLABS_DEFAULT_VOICE is “Bellla”" in warning
    assert "ELEVENLABS_DEFAULT_VOICE is “Bellla”" in response.content.decode()


def test_campaign_pages_warn_of_a_default_voice_that_resolves_to_nothing(
    admin_client, unresolved_default, campaign
) -> None:
    changelist = admin_client.get(reverse("admin:campaigns_campaign_changelist"), headers=ENGLISH)
    change = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]), headers=ENGLISH
    )

    for page in (changelist, change):
        (warning,) = warnings_of(page)
        assert "campaigns without a voice of their own cannot start" in warning
        assert "“Bellla”" in warning


def test_admin_pages_do_not_warn_when_the_default_voice_resolves(
    admin_client, unresolved_default, settings, campaign
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    VoiceFactory(provider_voice_id=BELLA_ID, name="Sarah")

    assert warnings_of(admin_client.get(CHANGELIST)) == []
    assert warnings_of(admin_client.get(reverse("admin:campaigns_campaign_changelist"))) == []
