"""A recording campaign's call is recorded only after the announcement: not at its creation
nor at its answer, but at the first <Gather> action, through Twilio's "create a Recording"
of the live call (the real SDK against the fake Twilio), once; failures leave the call
flagged and going on. The sandbox carrier records the same way."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.test import AsyncClient, Client
from django.urls import reverse

from calls import telephony
from calls.models import Call
from calls.recordings import RecordingStart, start_after_announcement
from calls.telephony import TelephonyRejected
from calls.telephony.sandbox import carrier
from calls.telephony.sandbox.state import call_key, live_recording_key
from campaigns.models import Contact
from templates.models import CallTemplate
from tests.factories import CallFactory, ContactFactory
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilio

# The turn webhook works in threads of its own, as under the real server: committed data.
pytestmark = pytest.mark.django_db(transaction=True)

APP_URL = "https://calls.example.com"
SID = "CA" + "e" * 32
RECORDINGS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{SID}/Recordings.json"


@pytest.fixture(autouse=True)
def _app_url(settings) -> None:
    settings.APP_URL = APP_URL


@pytest.fixture
def recording_call(campaign, call_template) -> Call:
    """A live call of a recording campaign whose scripted template announces it."""
    call_template.mode = CallTemplate.Mode.SCRIPTED
    call_template.greeting = (
        "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático "
        "y esta llamada será grabada."
    )
    call_template.steps = [
        {
            "id": "confirm",
            "prompt": "¿Vendrá a su cita? Diga sí o no.",
            "answers": [
                {"keywords": ["sí"], "digit": "1", "next": "end", "outcome": {"ok": True}},
                {"keywords": ["no"], "digit": "2", "next": "why", "outcome": {"ok": False}},
            ],
        },
        {
            "id": "why",
            "prompt": "¿Quiere cambiar la cita?",
            "answers": [{"keywords": ["sí"], "next": "end", "outcome": {"change": True}}],
        },
    ]
    call_template.save()
    campaign.record_calls = True
    campaign.caller_number = "+34910000000"
    campaign.save()
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        variables={"first_name": "Ana"},
        state=Contact.State.CALLING,
        attempts=1,
    )
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=SID,
        from_number="+34910000000",
        to_number=contact.phone,
    )


@pytest.fixture
def twilio(fake_twilio) -> FakeTwilio:
    """The fake Twilio with the call in progress, as after the callee picked up."""
    fake_twilio.set_call(SID, to="+34600000001", status="in-progress")
    return fake_twilio


def signed_post(name: str, call: Call, params: dict[str, str] | None = None) -> ET.Element:
    path = reverse(f"calls:{name}", kwargs={"call_id": call.pk})
    form = {
        "CallSid": SID,
        "AccountSid": ACCOUNT_SID,
        "CallStatus": "in-progress",
        **(params or {}),
    }
    signature = telephony.sign_request(url=APP_URL + path, params=form)
    if name == "turn":  # an ASGI view, as Twilio reaches it
        client = AsyncClient()
        response = async_to_sync(client.post)(path, form, headers={"x-twilio-signature": signature})
    else:
        response = Client().post(path, form, headers={"x-twilio-signature": signature})
    assert response.status_code == 200, response.content
    return ET.fromstring(response.content)  # noqa: S314 - our own TwiML


def starts(fake: FakeTwilio) -> list:
    return fake.requests_to("POST", RECORDINGS)


def test_recording_starts_at_the_first_gather_action_not_at_the_answer(
    twilio, recording_call
) -> None:
    # when Twilio asks for the answer's TwiML (the greeting with the announcement)
    answer = signed_post("answer", recording_call)

    # then nothing is recorded yet: the callee has not heard the announcement
    assert answer.find("Gather") is not None
    assert starts(twilio) == []
    recording_call.refresh_from_db()
    assert recording_call.recording_started_at is None

    # when the greeting's <Gather> ends (the callee answered it)
    turn = signed_post("turn", recording_call, {"SpeechResult": "no", "Confidence": "0.9"})

    # then the live call is recorded from now on, its callbacks to our signed URL
    assert turn.find("Gather") is not None  # the call goes on
    [request] = starts(twilio)
    assert request.form["RecordingStatusCallback"] == [
        f"{APP_URL}/twilio/calls/{recording_call.pk}/recording#rc=3"
    ]
    assert request.form["RecordingStatusCallbackMethod"] == ["POST"]
    [recording] = twilio.recordings.values()
    assert (recording["call_sid"], recording["status"]) == (SID, "in-progress")
    recording_call.refresh_from_db()
    assert recording_call.recording_started_at is not None
    assert recording_call.recording_sid == recording["sid"]
    assert not recording_call.recording_failed

    # when the callee answers again, nothing is started twice
    signed_post("turn", recording_call, {"SpeechResult": "sí", "Confidence": "0.9"})
    assert len(starts(twilio)) == 1


def test_a_silent_first_gather_starts_the_recording_too(twilio, recording_call) -> None:
    signed_post("answer", recording_call)

    path = reverse("calls:turn", kwargs={"call_id": recording_call.pk}) + "?silence=1"
    form = {"CallSid": SID, "AccountSid": ACCOUNT_SID}
    signature = telephony.sign_request(url=APP_URL + path, params=form)
    response = async_to_sync(AsyncClient().post)(
        path, form, headers={"x-twilio-signature": signature}
    )

    assert response.status_code == 200
    assert len(starts(twilio)) == 1


def test_a_campaign_that_does_not_record_never_asks(twilio, recording_call) -> None:
    recording_call.campaign.record_calls = False
    recording_call.campaign.save(update_fields=["record_calls"])

    signed_post("answer", recording_call)
    signed_post("turn", recording_call, {"SpeechResult": "no"})

    assert starts(twilio) == []
    recording_call.refresh_from_db()
    assert (recording_call.recording_started_at, recording_call.recording_failed) == (None, False)


@pytest.mark.parametrize("status", [500, 503])
def test_twilio_failing_to_start_flags_the_call_which_goes_on(
    twilio, recording_call, status
) -> None:
    signed_post("answer", recording_call)
    twilio.fail_next(status, when=lambda request: request.path == RECORDINGS)

    turn = signed_post("turn", recording_call, {"SpeechResult": "no"})

    assert turn.find("Gather") is not None  # the conversation goes on
    assert len(starts(twilio)) == 1  # not repeated: a second recording could start
    recording_call.refresh_from_db()
    assert recording_call.recording_failed
    assert recording_call.recording_started_at is None
    # and no later turn tries again
    signed_post("turn", recording_call, {"SpeechResult": "sí"})
    assert len(starts(twilio)) == 1


def test_twilio_too_busy_once_is_asked_again(twilio, recording_call, settings) -> None:
    settings.TWILIO_MAX_RETRIES = 1
    twilio.fail_next(429, when=lambda request: request.path == RECORDINGS)

    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.STARTED

    assert len(starts(twilio)) == 2
    assert len(twilio.recordings) == 1


def test_twilio_timing_out_flags_the_call(twilio, recording_call, settings) -> None:
    settings.TWILIO_TIMEOUT = 0.2
    twilio.delay_next(1.0)

    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.FAILED

    recording_call.refresh_from_db()
    assert recording_call.recording_failed


def test_a_call_no_longer_in_progress_is_refused_as_twilio_refuses_it(
    twilio, recording_call
) -> None:
    twilio.set_call(SID, status="completed")

    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.FAILED

    assert twilio.recordings == {}
    with pytest.raises(TelephonyRejected) as refused:
        telephony.start_recording(call_sid=SID, status_callback=f"{APP_URL}/r")
    assert (refused.value.status, refused.value.code) == (400, 21220)
    recording_call.refresh_from_db()
    assert recording_call.recording_failed


def test_start_after_announcement_is_claimed_once(twilio, recording_call) -> None:
    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.STARTED
    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.SKIPPED
    assert len(starts(twilio)) == 1


def test_an_inbound_call_is_not_recorded(twilio, recording_call) -> None:
    Call.objects.filter(pk=recording_call.pk).update(direction=Call.Direction.INBOUND, attempt=None)

    assert start_after_announcement(call_id=recording_call.pk) == RecordingStart.SKIPPED
    assert starts(twilio) == []


def test_the_recording_callback_still_needs_a_signature(twilio, recording_call) -> None:
    path = reverse("calls:recording", kwargs={"call_id": recording_call.pk})
    form = {
        "CallSid": SID,
        "AccountSid": ACCOUNT_SID,
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE"
        + "1" * 32,
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }

    unsigned = Client().post(path, form, headers={"x-twilio-signature": "forged"})
    signature = telephony.sign_request(url=APP_URL + path, params=form)
    signed = Client().post(path, form, headers={"x-twilio-signature": signature})

    assert unsigned.status_code == 403
    assert signed.status_code == 204
    recording_call.refresh_from_db()
    assert recording_call.recording_sid == "RE" + "1" * 32
    assert recording_call.recording_seconds == 12


# --- The sandbox carrier -----------------------------------------------------------------


def sandbox_call(status: str) -> str:
    sid = "CA" + "f" * 32
    cache.set(call_key(sid), {"sid": sid, "status": status, "params": {}})
    return sid


def test_the_sandbox_starts_recording_a_call_in_progress_once(settings) -> None:
    settings.TELEPHONY_BACKEND = "sandbox"
    sid = sandbox_call("in-progress")

    first = telephony.start_recording(call_sid=sid, status_callback=f"{APP_URL}/r")
    again = carrier.start_recording(sid, status_callback=f"{APP_URL}/r")

    assert first.startswith("RE") and len(first) == 34
    assert again == first
    assert cache.get(live_recording_key(sid)) == {"sid": first, "callback": f"{APP_URL}/r"}


def test_the_sandbox_refuses_to_record_a_call_not_in_progress(settings) -> None:
    settings.TELEPHONY_BACKEND = "sandbox"
    sid = sandbox_call("ringing")

    with pytest.raises(TelephonyRejected) as refused:
        telephony.start_recording(call_sid=sid, status_callback=f"{APP_URL}/r")

    assert refused.value.code == 21220
    assert cache.get(live_recording_key(sid)) is None
