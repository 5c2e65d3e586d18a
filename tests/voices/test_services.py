from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.db import IntegrityError, transaction
from django.utils import translation

from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import ANTONI_ID, BELLA_ID, GEORGE_ID, SARAH_ID
from voices import services, speech
from voices.models import Voice
from voices.services import (
    SyncResult,
    default_voice_id,
    default_voice_problem,
    ensure_default_voice,
    queue_first_voice_sync,
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
    assert (bella.name, bella.language) == ("Sarah", "es")  # today's name of Bella
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
    campaign.voice = Voice.objects.get(provider_voice_id=GEORGE_ID)
    campaign.save(update_fields=["voice"])

    # when the account drops that voice
    fake_elevenlabs.remove_voice(GEORGE_ID)
    result = sync_voices()

    # then the row stays, counted as missing
    assert result == SyncResult(unchanged=1, missing=1)
    campaign.refresh_from_db()
    assert campaign.voice.provider_voice_id == GEORGE_ID


def test_sync_voices_names_the_voices_it_created_updated_and_no_longer_finds(
    fake_elevenlabs,
) -> None:
    first = sync_voices()
    assert first.created_names == (f"Sarah ({SARAH_ID})", f"George ({GEORGE_ID})")

    fake_elevenlabs.update_voice(SARAH_ID, name="Sara")
    fake_elevenlabs.remove_voice(GEORGE_ID)
    second = sync_voices()

    assert second == SyncResult(updated=1, missing=1)
    assert (second.created_names, second.updated_names) == ((), (f"Sara ({SARAH_ID})",))
    assert second.missing_names == (f"George ({GEORGE_ID})",)
    assert second.counts() == {"created": 0, "updated": 1, "unchanged": 0, "missing": 1}


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
        "bella": VoiceFactory(provider_voice_id=BELLA_ID, name="Bella"),
        "antoni": VoiceFactory(provider_voice_id=ANTONI_ID, name="Antoni"),
    }


def test_resolve_default_voice_by_provider_id(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = ANTONI_ID

    assert resolve_default_voice() == voices["antoni"]


def test_resolve_default_voice_by_name_ignoring_case(settings, voices) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "bELLA"

    assert resolve_default_voice() == voices["bella"]


def test_resolve_default_voice_prefers_provider_id_over_name(settings, voices) -> None:
    # a voice whose name happens to be another voice's id
    VoiceFactory(provider_voice_id="other", name=ANTONI_ID)
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
    george = Voice.objects.get(provider_voice_id=GEORGE_ID)
    set_default_voice(voice=george)
    fake_elevenlabs.update_voice(GEORGE_ID, name="George 2")

    sync_voices()

    george.refresh_from_db()
    assert (george.name, george.is_default) == ("George 2", True)


# --- The default voice as the deployment guide names it ------------------------------------


def test_resolve_default_voice_legacy_name_finds_the_renamed_voice(settings) -> None:
    # given the catalogue as ElevenLabs lists it today: Bella's id is named Sarah
    sarah = VoiceFactory(provider_voice_id=SARAH_ID, name="Sarah")
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    assert resolve_default_voice() == sarah


def test_resolve_default_voice_legacy_name_before_id_before_name(settings) -> None:
    # given a voice of the account named like a legacy premade voice, and that voice
    VoiceFactory(provider_voice_id="clone0000000000000001", name="Rachel")
    rachel = VoiceFactory(provider_voice_id="21m00Tcm4TlvDq8ikWAM", name="Rachel v2")
    settings.ELEVENLABS_DEFAULT_VOICE = "rachel"

    assert resolve_default_voice() == rachel


def test_default_voice_id_maps_legacy_names_accepts_ids_and_nothing_else(settings) -> None:
    for value, expected in [
        ("Bella", SARAH_ID),
        ("  sam ", "yoZ06aMxZJJ28mfd3POQ"),
        (GEORGE_ID, GEORGE_ID),
        ("Sarah", ""),  # a name: found in the catalogue or not at all
        ("", ""),
    ]:
        settings.ELEVENLABS_DEFAULT_VOICE = value
        assert default_voice_id() == expected, value


def test_ensure_default_voice_fetches_a_voice_missing_from_the_catalogue(
    fake_elevenlabs, settings
) -> None:
    # given a legacy name whose voice the account does not list, and an empty catalogue
    settings.ELEVENLABS_DEFAULT_VOICE = "Antoni"

    # when
    voice = ensure_default_voice()

    # then that one voice was fetched by id and added
    assert voice is not None
    assert (voice.provider_voice_id, voice.name, voice.language) == (ANTONI_ID, "Antoni", "en")
    assert [r.path for r in fake_elevenlabs.requests] == [f"/v1/voices/{ANTONI_ID}"]
    # and it is now resolved locally, without another request
    assert ensure_default_voice() == voice == resolve_default_voice()
    assert len(fake_elevenlabs.requests) == 1


def test_ensure_default_voice_by_an_id_elevenlabs_does_not_know(fake_elevenlabs, settings):
    settings.ELEVENLABS_DEFAULT_VOICE = "NoSuchVoice000000000"

    assert ensure_default_voice() is None
    assert len(fake_elevenlabs.requests) == 1
    assert not Voice.objects.exists()


def test_ensure_default_voice_asks_nothing_for_an_unknown_name(fake_elevenlabs, settings):
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"

    assert ensure_default_voice() is None
    assert fake_elevenlabs.requests == []


def test_ensure_default_voice_with_sync_lists_the_catalogue_for_a_voice_named(
    fake_elevenlabs, settings
) -> None:
    # given a default named by its catalogue name, and a catalogue never synced
    settings.ELEVENLABS_DEFAULT_VOICE = "george"

    # when a campaign start asks for it
    voice = ensure_default_voice(sync=True)

    # then the catalogue was synced and the voice found in it
    assert voice is not None and voice.provider_voice_id == GEORGE_ID
    assert [r.path for r in fake_elevenlabs.requests] == ["/v2/voices"]
    assert Voice.objects.count() == 2


def test_ensure_default_voice_with_sync_lists_a_fresh_catalogue_only_once(
    fake_elevenlabs, settings
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"

    assert ensure_default_voice(sync=True) is None
    assert ensure_default_voice(sync=True) is None  # staff trying again at once

    assert [r.path for r in fake_elevenlabs.requests] == ["/v2/voices"]


def test_ensure_default_voice_with_sync_lists_again_once_the_catalogue_is_stale(
    fake_elevenlabs, settings, monkeypatch
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Lucía"
    monkeypatch.setattr(services, "FRESH_SECONDS", 1)
    assert ensure_default_voice(sync=True) is None

    # when the voice is added to the account and the catalogue is no longer fresh
    fake_elevenlabs.add_voice({"voice_id": "L" * 20, "name": "Lucía", "labels": {}})
    time.sleep(1.2)

    assert ensure_default_voice(sync=True).provider_voice_id == "L" * 20
    assert len(fake_elevenlabs.requests_to("/v2/voices")) == 2


def test_ensure_default_voice_with_sync_keeps_to_the_lookup_deadline(
    fake_elevenlabs, settings, monkeypatch
) -> None:
    # given ElevenLabs slower than staff may wait
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"
    settings.ELEVENLABS_TIMEOUT = 1.0
    monkeypatch.setattr(services, "LOOKUP_SECONDS", 1.5)
    fake_elevenlabs.delay = 5.0

    # when
    started = time.monotonic()
    with pytest.raises(speech.SpeechUnavailable):
        ensure_default_voice(sync=True)

    # then it gave up at the deadline, having changed nothing
    assert time.monotonic() - started < 3.0
    assert not Voice.objects.exists()


def test_ensure_default_voice_with_sync_raises_a_refused_listing(fake_elevenlabs, settings):
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"
    settings.ELEVENLABS_API_KEY = "revoked"

    with pytest.raises(speech.SpeechRejected) as excinfo:
        ensure_default_voice(sync=True)

    assert excinfo.value.status_code == 401


def test_queue_first_voice_sync_needs_a_key_and_an_empty_catalogue(settings) -> None:
    settings.ELEVENLABS_API_KEY = ""
    assert queue_first_voice_sync() is False

    settings.ELEVENLABS_API_KEY = "key"
    VoiceFactory(provider_voice_id=SARAH_ID, name="Sarah")
    assert queue_first_voice_sync() is False


def test_ensure_default_voice_outage_is_unavailable(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Antoni"
    settings.ELEVENLABS_MAX_RETRIES = 0
    fake_elevenlabs.fail_next(503)

    with pytest.raises(speech.SpeechUnavailable):
        ensure_default_voice()


def test_sync_voices_adds_the_default_voice_the_account_does_not_list(
    fake_elevenlabs, settings
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Antoni"

    result = sync_voices()

    assert result == SyncResult(created=3)
    assert resolve_default_voice().provider_voice_id == ANTONI_ID
    assert fake_elevenlabs.requests_to(f"/v1/voices/{ANTONI_ID}")


def test_sync_voices_with_the_guides_default_needs_no_extra_request(
    fake_elevenlabs, settings
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    assert sync_voices() == SyncResult(created=2)

    assert resolve_default_voice().name == "Sarah"
    assert [r.path for r in fake_elevenlabs.requests] == ["/v2/voices"]


def test_default_voice_problem_names_the_setting_its_value_and_the_fix(settings) -> None:
    settings.ELEVENLABS_API_KEY = "key"
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"

    with translation.override("en"):
        problem = default_voice_problem()

    assert "ELEVENLABS_DEFAULT_VOICE" in problem and "“Nobody”" in problem
    assert "Set ELEVENLABS_DEFAULT_VOICE to a voice id" in problem


def test_default_voice_problem_is_empty_when_it_resolves_or_speech_is_off(settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    settings.ELEVENLABS_API_KEY = ""
    assert default_voice_problem() == ""  # <Say> by design: nothing to warn of

    settings.ELEVENLABS_API_KEY = "key"
    VoiceFactory(provider_voice_id=SARAH_ID, name="Sarah")
    assert default_voice_problem() == ""
