"""A call's recording at the carrier (calls.recordings): its audio and its deletion, through
the real twilio SDK against the fake Twilio, and through the sandbox carrier's store."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from calls import recordings, telephony
from calls.models import Call
from calls.recordings import RecordingUnavailable, delete_recording, fetch_recording_audio
from calls.telephony.sandbox import carrier
from calls.telephony.sandbox.state import recording_key
from tests.factories import CallFactory
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilio

pytestmark = pytest.mark.django_db

CALL_SID = "CA" + "ab" * 16


def recorded_call(fake: FakeTwilio, **fields: object) -> tuple[Call, dict[str, object]]:
    """A call whose completed recording the fake Twilio holds, as the callback left it."""
    recording = fake.add_recording(CALL_SID, audio=b"ID3-the-audio", **fields)
    call = CallFactory(
        provider_sid=CALL_SID,
        recording_sid=recording["sid"],
        recording_url=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
        + str(recording["sid"]),
        recording_seconds=7,
    )
    return call, recording


def recording_path(sid: object, extension: str = ".json") -> str:
    return f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}{extension}"


# --- Twilio -----------------------------------------------------------------------------


def test_fetch_recording_audio_reads_the_resource_then_its_mp3(fake_twilio) -> None:
    call, recording = recorded_call(fake_twilio)

    audio = fetch_recording_audio(call)

    assert audio == (b"ID3-the-audio", "audio/mpeg")
    paths = [(r.method, r.path) for r in fake_twilio.requests]
    assert paths == [
        ("GET", recording_path(recording["sid"])),
        ("GET", recording_path(recording["sid"], ".mp3")),
    ]


def test_fetch_recording_audio_of_a_call_without_recording_asks_nothing(fake_twilio) -> None:
    call = CallFactory(provider_sid=CALL_SID)

    assert fetch_recording_audio(call) is None
    assert fake_twilio.requests == []


def test_fetch_recording_audio_of_a_recording_twilio_no_longer_has_is_none(fake_twilio) -> None:
    call, _recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(404)

    assert fetch_recording_audio(call) is None


@pytest.mark.parametrize("status", [500, 503, 429])
def test_fetch_recording_audio_when_twilio_keeps_failing_is_unavailable(
    fake_twilio, settings, status
) -> None:
    settings.TWILIO_MAX_RETRIES = 1
    call, _recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(status, times=2)

    with pytest.raises(RecordingUnavailable):
        fetch_recording_audio(call)
    assert len(fake_twilio.requests) == 2  # retried once, as every fetch is


def test_fetch_recording_audio_when_the_media_fails_is_unavailable(fake_twilio) -> None:
    call, _recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(502, when=lambda request: request.path.endswith(".mp3"))

    with pytest.raises(RecordingUnavailable):
        fetch_recording_audio(call)


def test_fetch_recording_audio_when_twilio_times_out_is_unavailable(fake_twilio, settings) -> None:
    settings.TWILIO_TIMEOUT = 0.2
    settings.TWILIO_MAX_RETRIES = 0
    call, _recording = recorded_call(fake_twilio)
    fake_twilio.delay_next(1.0)

    with pytest.raises(RecordingUnavailable):
        fetch_recording_audio(call)


def test_fetch_recording_audio_refused_for_good_is_raised_as_such(fake_twilio) -> None:
    call, _recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(403, code=20403, message="Forbidden")

    with pytest.raises(telephony.TelephonyRejected) as refused:
        fetch_recording_audio(call)
    assert refused.value.code == 20403


def test_delete_recording_deletes_it_at_twilio_and_blanks_the_call(fake_twilio) -> None:
    call, recording = recorded_call(fake_twilio)

    assert delete_recording(call) is True

    assert [(r.method, r.path) for r in fake_twilio.requests] == [
        ("DELETE", recording_path(recording["sid"]))
    ]
    assert recording["sid"] not in fake_twilio.recordings
    call.refresh_from_db()
    assert (call.recording_sid, call.recording_url, call.recording_seconds) == ("", "", None)
    # Gone at Twilio too: fetching it now is Twilio's 404, so there is no audio.
    call.recording_sid = str(recording["sid"])
    assert fetch_recording_audio(call) is None


def test_delete_recording_already_gone_at_twilio_counts_as_deleted(fake_twilio) -> None:
    call, recording = recorded_call(fake_twilio)
    fake_twilio.add_recording(CALL_SID)  # another one: only ours goes
    with fake_twilio._lock:
        del fake_twilio._recordings[str(recording["sid"])]

    assert delete_recording(call) is True

    [request] = fake_twilio.requests
    assert request.method == "DELETE"
    call.refresh_from_db()
    assert call.recording_sid == ""
    assert len(fake_twilio.recordings) == 1


def test_delete_recording_of_a_call_without_one_is_false(fake_twilio) -> None:
    call = CallFactory(provider_sid=CALL_SID)

    assert delete_recording(call) is False
    assert fake_twilio.requests == []


@pytest.mark.parametrize("status", [500, 429])
def test_delete_recording_when_twilio_keeps_failing_keeps_the_reference(
    fake_twilio, settings, status
) -> None:
    settings.TWILIO_MAX_RETRIES = 1
    call, recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(status, times=2)

    with pytest.raises(RecordingUnavailable):
        delete_recording(call)

    call.refresh_from_db()
    assert call.recording_sid == recording["sid"]  # to try again
    assert recording["sid"] in fake_twilio.recordings


def test_delete_recording_retries_a_transient_failure(fake_twilio, settings) -> None:
    settings.TWILIO_MAX_RETRIES = 2
    call, recording = recorded_call(fake_twilio)
    fake_twilio.fail_next(503)

    assert delete_recording(call) is True
    assert recording["sid"] not in fake_twilio.recordings


def test_a_recording_known_only_by_its_url_is_found_by_the_sid_it_ends_with(fake_twilio) -> None:
    call, recording = recorded_call(fake_twilio)
    call.recording_sid = ""

    assert recordings.recording_sid(call) == recording["sid"]
    assert fetch_recording_audio(call) == (b"ID3-the-audio", "audio/mpeg")


# --- The sandbox carrier -----------------------------------------------------------------


@pytest.fixture
def sandbox(settings) -> None:
    settings.TELEPHONY_BACKEND = "sandbox"


def sandbox_recorded_call() -> Call:
    sid = "RE" + "cd" * 16
    cache.set(recording_key(sid), {"call": CALL_SID, "duration": 4})
    return CallFactory(provider_sid=CALL_SID, recording_sid=sid, recording_seconds=4)


def test_sandbox_recording_is_fetched_and_deleted_from_its_store(sandbox) -> None:
    call = sandbox_recorded_call()
    sid = call.recording_sid

    content, content_type = fetch_recording_audio(call) or (b"", "")
    assert content.startswith(b"RIFF") and content_type == "audio/x-wav"

    assert delete_recording(call) is True
    assert cache.get(recording_key(sid)) is None
    call.recording_sid = sid
    assert fetch_recording_audio(call) is None
    assert carrier.delete_recording(sid) is False
