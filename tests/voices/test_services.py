from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import IntegrityError, transaction

from tests.fakes.elevenlabs import ANTONI_ID, BELLA_ID
from voices import speech
from voices.models import Voice
from voices.services import (
    SyncResult,
    resolve_default_voice,
    set_default_voice,
    sync_voices,
    voice_for_campaign,
)

pytestmark = pytest.mark.django_db


def test_sync_voices_creates_updates_then_changes_nothing(fake_elevenlabs) -> None:
    # given an empty catalogue
    # when the first sync runs
    first = sync_voices()

    # then every listed voice is created with its details
    assert first == SyncResult(created=2)
    bella = Voice.objects.get(provider_voice_id=BELLA_ID)
    assert (bella.name, bella.language) == ("Bella", "es")
    assert bella.labels == {"accent": "castilian", "gender": "female"}
    assert bella.preview_url.endswith(f"/{BELLA_ID}/preview.mp3")
    assert bella.settings["similarity_boost"] == 0.75

    # when the provider renames one voice and the sync runs again
    fake_elevenlabs.update_voice(BELLA_ID, name="Bella (ES)", labels={"accent": "madrid"})
    second = sync_voices()

    # then only that voice is updated
    assert second == SyncResult(updated=1, unchanged=1)
    bella.refresh_from_db()
    assert (bella.name, bella.labels) == ("Bella (ES)", {"accent": "madrid"})

    # and a third run finds nothing to do
    assert sync_voices() == SyncResult(unchanged=2)
    assert Voice.objects.count() == 2


def test_sync_voices_keeps_voices_no_longer_listed(fake_elevenlabs, campaign) -> None:
    # given a synced catalogue whose voice a campaign uses
    sync_voices()
    campaign.voice = Voice.objects.get(provider_voice_id=ANTONI_ID)
    campaign.save(update_fields=["voice"])

    # when the account drops that voice
    fake_elevenlabs.remove_voice(ANTONI_ID)
    result = sync_voices()

    # then the row stays, counted as missing
    assert result == SyncResult(unchanged=1, missing=1)
    campaign.refresh_from_db()
    assert campaign.voice.provider_voice_id == ANTONI_ID


def test_sync_voices_fits_odd_provider_values_into_columns(fake_elevenlabs) -> None:
    fake_elevenlabs.voices = [
        {"voice_id": "odd", "name": "N" * 300, "preview_url": "not a url", "labels": None},
    ]

    assert sync_voices() == SyncResult(created=1)

    voice = Voice.objects.get(provider_voice_id="odd")
    assert (len(voice.name), voice.preview_url, voice.labels) == (200, "", {})


def test_sync_voices_provider_refusal_changes_nothing(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = "revoked"

    with pytest.raises(speech.SpeechRejected) as excinfo:
        sync_voices()

    assert excinfo.value.status_code == 401
    assert not Voice.objects.exists()


@pytest.fixture
def voices() -> dict[str, Voice]:
    return {
        "bella": Voice.objects.create(provider_voice_id=BELLA_ID, name="Bella"),
        "antoni": Voice.objects.create(provider_voice_id=ANTONI_ID, name="Antoni"),
    }


def test_resolve_default_voice_by_provider_id(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = ANTONI_ID

    assert resolve_default_voice() == voices["antoni"]


def test_resolve_default_voice_by_name_ignoring_case(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "bELLA"

    assert resolve_default_voice() == voices["bella"]


def test_resolve_default_voice_prefers_provider_id_over_name(settings, voices) -> None:
    # a voice whose name happens to be another voice's id
    Voice.objects.create(provider_voice_id="other", name=ANTONI_ID)
    settings.ELEVENLABS_DEFAULT_VOICE = ANTONI_ID

    assert resolve_default_voice() == voices["antoni"]


@pytest.mark.parametrize("default", ["Rachel", ""])
def test_resolve_default_voice_none_when_not_synced(settings, voices, default) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = default

    assert resolve_default_voice() is None


def test_voice_for_campaign_prefers_the_campaign_voice(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    assert voice_for_campaign(campaign=SimpleNamespace(voice=voices["antoni"])) == voices["antoni"]
    assert voice_for_campaign(campaign=SimpleNamespace(voice=None)) == voices["bella"]


def test_voice_for_campaign_with_a_real_campaign(settings, voices, campaign) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Antoni"

    assert campaign.voice is None
    assert voice_for_campaign(campaign=campaign) == voices["antoni"]


def test_set_default_voice_wins_over_the_setting(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    set_default_voice(voice=voices["antoni"])

    assert resolve_default_voice() == voices["antoni"]
    assert voice_for_campaign(campaign=SimpleNamespace(voice=None)) == voices["antoni"]
    assert voice_for_campaign(campaign=SimpleNamespace(voice=voices["bella"])) == voices["bella"]


def test_set_default_voice_keeps_one_default(voices) -> None:
    # given Antoni is the default
    set_default_voice(voice=voices["antoni"])

    # when Bella is made the default
    set_default_voice(voice=voices["bella"])

    # then she is the only one
    assert list(Voice.objects.filter(is_default=True)) == [voices["bella"]]
    assert voices["bella"].is_default


def test_set_default_voice_none_goes_back_to_the_setting(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    set_default_voice(voice=voices["antoni"])

    set_default_voice(voice=None)

    assert not Voice.objects.filter(is_default=True).exists()
    assert resolve_default_voice() == voices["bella"]


def test_only_one_voice_can_be_the_default(voices) -> None:
    Voice.objects.filter(pk=voices["bella"].pk).update(is_default=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        Voice.objects.filter(pk=voices["antoni"].pk).update(is_default=True)


def test_resolve_default_voice_reads_once(settings, voices, django_assert_num_queries) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "bella"

    with django_assert_num_queries(1):
        assert resolve_default_voice() == voices["bella"]


def test_sync_keeps_the_chosen_default(fake_elevenlabs) -> None:
    sync_voices()
    antoni = Voice.objects.get(provider_voice_id=ANTONI_ID)
    set_default_voice(voice=antoni)
    fake_elevenlabs.update_voice(ANTONI_ID, name="Antoni 2")

    sync_voices()

    antoni.refresh_from_db()
    assert (antoni.name, antoni.is_default) == ("Antoni 2", True)
