"""The telephony package: the backend TELEPHONY_BACKEND picks, and the Twilio backend
driving the real SDK over HTTP against the fake Twilio."""

from __future__ import annotations

import ast
import base64
import datetime
import email.utils
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import QueryDict
from django.utils import translation
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from calls import telephony
from calls.telephony import ProviderCall, TelephonyRejected, TelephonyUnavailable
from calls.telephony.sandbox import SandboxBackend
from calls.telephony.twilio import TwilioBackend
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

APP = "https://callcenter.example.com"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    # Reasons are translated; these tests read the English ones.
    with translation.override("en"):
        yield


def dial(**overrides: object) -> ProviderCall:
    """create_call with the arguments the dialer passes; `overrides` replace some."""
    arguments: dict[str, object] = {
        "to": "+34600000001",
        "url": f"{APP}/twilio/calls/7/answer",
        "fallback_url": f"{APP}/twilio/calls/7/fallback",
        "status_callback": telephony.url_with_retries(f"{APP}/twilio/calls/7/status"),
        "async_amd_callback": telephony.url_with_retries(f"{APP}/twilio/calls/7/amd"),
        "timeout": 25,
        "time_limit": 600,
        "record": False,
    }
    arguments.update(overrides)
    return telephony.create_call(**arguments)


def existing_call(fake: FakeTwilio, **fields: object) -> str:
    sid = "CA" + "ab" * 16
    fake.set_call(sid, to="+34600000001", **{"from": "+34910000000"}, **fields)
    return sid


# --- create_call: the request -----------------------------------------------------------


def test_create_call_sends_each_parameter_twilio_needs(fake_twilio) -> None:
    # when
    call = dial(record=True, recording_status_callback=f"{APP}/twilio/calls/7/recording")

    # then
    [request] = fake_twilio.requests
    assert request.method == "POST" and request.path == CALLS
    assert request.form == {
        "To": ["+34600000001"],
        "From": ["+34910000000"],
        "Url": [f"{APP}/twilio/calls/7/answer"],
        "Method": ["POST"],
        "FallbackUrl": [f"{APP}/twilio/calls/7/fallback"],
        "FallbackMethod": ["POST"],
        "StatusCallback": [f"{APP}/twilio/calls/7/status#rc=3"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "StatusCallbackMethod": ["POST"],
        "MachineDetection": ["DetectMessageEnd"],
        "AsyncAmd": ["true"],
        "AsyncAmdStatusCallback": [f"{APP}/twilio/calls/7/amd#rc=3"],
        "AsyncAmdStatusCallbackMethod": ["POST"],
        "Timeout": ["25"],
        "TimeLimit": ["600"],
        "Record": ["true"],
        "RecordingStatusCallback": [f"{APP}/twilio/calls/7/recording"],
        "RecordingStatusCallbackMethod": ["POST"],
    }
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("twilio-python/")
    assert call == ProviderCall(sid=call.sid, status="queued", queue_time_ms=0, price_unit="USD")
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert fake_twilio.call(call.sid)["to"] == "+34600000001"


def test_create_call_without_recording_or_amd_leaves_their_parameters_out(fake_twilio) -> None:
    dial(machine_detection=None, record=False, from_="+34910000009")

    [request] = fake_twilio.requests
    assert request.form["From"] == ["+34910000009"]
    left_out = {
        "MachineDetection",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod",
        "Record",
        "RecordingStatusCallback",
        "RecordingStatusCallbackMethod",
    }
    assert left_out.isdisjoint(request.form)


def test_create_call_sends_only_the_status_events_asked_for(fake_twilio) -> None:
    dial(status_callback_events=["answered", "completed"])

    assert fake_twilio.requests[0].form["StatusCallbackEvent"] == ["answered", "completed"]


@pytest.mark.parametrize(
    "overrides",
    [{"status_callback_events": ["hung-up"]}, {"machine_detection": "Sometimes"}],
)
def test_create_call_refuses_unknown_options_before_sending(fake_twilio, overrides) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the option
        dial(**overrides)

    assert fake_twilio.requests == []


def test_create_call_without_a_caller_number_is_not_configured(fake_twilio, settings) -> None:
    settings.TWILIO_PHONE_NUMBER = ""

    with pytest.raises(telephony.TelephonyNotConfigured) as caught:
        dial()

    assert caught.value.status == 0 and "TWILIO_PHONE_NUMBER" in str(caught.value)
    assert fake_twilio.requests == []


def test_create_call_without_credentials_makes_no_request(fake_twilio, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = ""

    with pytest.raises(telephony.TelephonyNotConfigured):
        dial()

    assert fake_twilio.requests == []


def test_create_call_reaches_the_base_url_whatever_edge_the_environment_names(
    fake_twilio, monkeypatch
) -> None:
    # The SDK would rewrite its hosts to api.dublin.ie1.twilio.com.
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")

    dial()

    assert len(fake_twilio.requests) == 1


# --- The spec check of the fake ---------------------------------------------------------


def test_fake_twilio_answers_400_to_a_request_that_breaks_the_spec(fake_twilio) -> None:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = fake_twilio.url  # the adapter is bypassed on purpose

    # when: values the adapter itself refuses to send
    with pytest.raises(TwilioRestException) as caught:
        client.api.account.calls.create(
            to="+34600000001",
            from_="+34910000000",
            url=f"{APP}/answer",
            machine_detection="Sometimes",
            status_callback_event=["initiated", "hung-up"],
            timeout="soon",
        )

    # then
    assert caught.value.status == 400
    violations = fake_twilio.take_violations()
    assert len(violations) == 3
    assert any("MachineDetection='Sometimes' is not one of" in v for v in violations)
    assert any("StatusCallbackEvent='hung-up'" in v for v in violations)
    assert any("Timeout='soon' is not an integer" in v for v in violations)
    assert fake_twilio.calls == []


def test_fake_twilio_checks_its_own_answers_against_the_spec(fake_twilio) -> None:
    sid = existing_call(fake_twilio, status="hung-up")

    telephony.fetch_call(sid=sid)

    [violation] = fake_twilio.take_violations()
    assert "body.status='hung-up' is not one of" in violation


# --- create_call: failures --------------------------------------------------------------


def test_create_call_retries_a_429_then_succeeds(fake_twilio) -> None:
    fake_twilio.fail_next(429, times=2)

    call = dial()

    assert len(fake_twilio.requests_to("POST", "/Calls.json")) == 3
    assert len(fake_twilio.sleeps) == 2
    assert [c["sid"] for c in fake_twilio.calls] == [call.sid]


def test_create_call_waits_as_long_as_a_429_retry_after_says(fake_twilio) -> None:
    fake_twilio.fail_next(429, headers={"Retry-After": "2"})

    dial()

    assert fake_twilio.sleeps == [2.0]


def test_create_call_gives_up_on_429_after_the_configured_retries(fake_twilio, settings) -> None:
    settings.TWILIO_MAX_RETRIES = 2
    fake_twilio.fail_next(429, times=5)

    with pytest.raises(TelephonyUnavailable) as caught:
        dial()

    assert caught.value.attempts == 3 and caught.value.status == 429
    assert caught.value.code == 20429 and caught.value.possibly_created is False
    assert len(fake_twilio.requests) == 3


def test_create_call_does_not_repeat_after_a_5xx(fake_twilio) -> None:
    fake_twilio.fail_next(500)

    with pytest.raises(TelephonyUnavailable) as caught:
        dial()

    assert caught.value.possibly_created is True
    assert caught.value.attempts == 1 and caught.value.status == 500
    assert len(fake_twilio.requests) == 1 and fake_twilio.sleeps == []


def test_create_call_does_not_repeat_after_a_timeout(fake_twilio, settings) -> None:
    settings.TWILIO_TIMEOUT = 0.2
    fake_twilio.delay_next(1.0)

    with pytest.raises(TelephonyUnavailable) as caught:
        dial()

    assert caught.value.possibly_created is True and caught.value.attempts == 1
    assert len(fake_twilio.requests) == 1 and fake_twilio.sleeps == []


def test_create_call_does_not_repeat_after_a_connection_lost_mid_request(fake_twilio) -> None:
    fake_twilio.drop_next()

    with pytest.raises(TelephonyUnavailable) as caught:
        dial()

    assert caught.value.possibly_created is True
    assert len(fake_twilio.requests) == 1


def test_create_call_retries_when_twilio_cannot_be_reached(
    fake_twilio, settings, closed_port
) -> None:
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(TelephonyUnavailable) as caught:
        dial()

    # Nothing was sent, so each attempt was safe: 1 + TWILIO_MAX_RETRIES.
    assert caught.value.attempts == 4 and caught.value.possibly_created is False
    assert len(fake_twilio.sleeps) == 3


@pytest.mark.parametrize(
    ("code", "reason", "flag"),
    [
        (21211, "The number to call is not valid.", "is_invalid_number"),
        (13224, "The number to call is invalid or not supported", "is_invalid_number"),
        (21215, "not enabled in the account's Voice Geo Permissions", "is_geo_permission"),
        (21217, "The number to call is not a valid phone number.", "is_invalid_number"),
        (21210, "not a Twilio number or verified caller ID", None),
        (21212, "The caller number is not valid.", None),
    ],
)
def test_create_call_rejects_an_unusable_number_without_retrying(
    fake_twilio, code, reason, flag
) -> None:
    fake_twilio.fail_next(400, code=code, message=f"Twilio's words for {code}")

    with pytest.raises(TelephonyRejected) as caught:
        dial()

    rejected = caught.value
    assert rejected.status == 400 and rejected.code == code
    assert rejected.provider_message == f"Twilio's words for {code}"
    assert reason in rejected.reason
    assert not rejected.is_auth_failure and not rejected.is_concurrency_limit
    if flag:
        assert getattr(rejected, flag) is True
    assert len(fake_twilio.requests) == 1 and fake_twilio.sleeps == []


def test_create_call_reports_rejected_credentials_as_an_auth_failure(fake_twilio, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "not-the-token"

    with pytest.raises(TelephonyRejected) as caught:
        dial()

    assert caught.value.is_auth_failure and caught.value.code == 20003
    assert caught.value.status == 401 and "credentials" in caught.value.reason
    assert len(fake_twilio.requests) == 1


@pytest.mark.parametrize("status", [400, 429])
def test_create_call_reports_the_concurrency_limit_without_retrying(fake_twilio, status) -> None:
    fake_twilio.fail_next(status, code=10004, message="Call concurrency limit exceeded")

    with pytest.raises(TelephonyRejected) as caught:
        dial()

    assert caught.value.is_concurrency_limit and not caught.value.is_auth_failure
    assert "simultaneous calls" in caught.value.reason
    assert len(fake_twilio.requests) == 1


def test_create_call_rejection_with_an_unmapped_code_keeps_twilios_words(
    fake_twilio, settings
) -> None:
    fake_twilio.fail_next(400, code=99999, message="Something new")

    with pytest.raises(TelephonyRejected) as caught:
        dial()

    assert caught.value.code == 99999
    assert caught.value.reason == "Twilio refused the request (error 99999): Something new"


# --- fetch, hang up, redirect -----------------------------------------------------------


def test_fetch_call_retries_a_503_then_returns_the_call(fake_twilio) -> None:
    sid = existing_call(
        fake_twilio,
        status="completed",
        duration="42",
        price="-0.01300",
        price_unit="EUR",
        answered_by="machine_end_beep",
        queue_time="1200",
    )
    fake_twilio.fail_next(503)

    call = telephony.fetch_call(sid=sid)

    assert call == ProviderCall(
        sid=sid,
        status="completed",
        queue_time_ms=1200,
        answered_by="machine_end_beep",
        duration=42,
        price="-0.01300",
        price_unit="EUR",
    )
    assert [r.method for r in fake_twilio.requests] == ["GET", "GET"]
    assert fake_twilio.requests[0].path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    assert len(fake_twilio.sleeps) == 1


def test_fetch_call_shows_no_price_until_twilio_has_priced_the_ended_call(fake_twilio) -> None:
    # given: a call that ended at 10:00, which the fake Twilio prices 30 s later
    ended = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.UTC)
    now = [ended + datetime.timedelta(seconds=29)]
    fake_twilio.clock = lambda: now[0]
    fake_twilio.price_delay = datetime.timedelta(seconds=30)
    sid = existing_call(
        fake_twilio,
        status="completed",
        duration="75",
        end_time=email.utils.format_datetime(ended),
    )

    # when / then: no price yet, then Twilio's (two started minutes), as Twilio writes it
    before = telephony.fetch_call(sid=sid)
    now[0] = ended + datetime.timedelta(seconds=30)
    after = telephony.fetch_call(sid=sid)

    assert (before.price, before.price_unit) == (None, "USD")
    assert (after.price, after.price_unit) == ("-0.02600", "USD")
    assert after.ended_at == ended


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_fetch_call_of_a_call_not_charged_shows_no_price(fake_twilio, status) -> None:
    long_ago = email.utils.format_datetime(datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC))
    sid = existing_call(fake_twilio, status=status, duration="0", end_time=long_ago)

    assert telephony.fetch_call(sid=sid).price is None


def test_fetch_call_retries_a_timeout(fake_twilio, settings) -> None:
    settings.TWILIO_TIMEOUT = 0.2
    sid = existing_call(fake_twilio)
    fake_twilio.delay_next(1.0)

    assert telephony.fetch_call(sid=sid).sid == sid
    assert len(fake_twilio.requests) == 2


def test_fetch_call_gives_up_after_the_configured_retries(fake_twilio) -> None:
    sid = existing_call(fake_twilio)
    fake_twilio.fail_next(503, times=10)

    with pytest.raises(TelephonyUnavailable) as caught:
        telephony.fetch_call(sid=sid)

    assert caught.value.attempts == 4 and caught.value.possibly_created is False
    assert len(fake_twilio.requests) == 4


def test_fetch_call_of_an_unknown_sid_is_rejected(fake_twilio) -> None:
    with pytest.raises(TelephonyRejected) as caught:
        telephony.fetch_call(sid="CA" + "00" * 16)

    assert caught.value.status == 404 and caught.value.code == 20404


def test_hang_up_completes_the_call(fake_twilio) -> None:
    sid = existing_call(fake_twilio, status="in-progress")

    call = telephony.hang_up(sid=sid)

    [request] = fake_twilio.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    assert request.form == {"Status": ["completed"]}
    assert call.status == "completed"


def test_hang_up_retries_a_5xx(fake_twilio) -> None:
    sid = existing_call(fake_twilio, status="in-progress")
    fake_twilio.fail_next(502, code=None)

    assert telephony.hang_up(sid=sid).status == "completed"
    assert len(fake_twilio.requests) == 2


def test_redirect_call_points_the_live_call_at_new_twiml(fake_twilio) -> None:
    sid = existing_call(fake_twilio, status="in-progress")

    telephony.redirect_call(sid=sid, url=f"{APP}/twilio/calls/7/voicemail")

    [request] = fake_twilio.requests
    assert request.path.endswith(f"/Calls/{sid}.json")
    assert request.form == {"Url": [f"{APP}/twilio/calls/7/voicemail"], "Method": ["POST"]}


def test_redirect_call_of_an_ended_call_is_rejected(fake_twilio) -> None:
    sid = existing_call(fake_twilio, status="completed")

    with pytest.raises(TelephonyRejected) as caught:
        telephony.redirect_call(sid=sid, url=f"{APP}/twilio/calls/7/voicemail")

    assert caught.value.code == 21220 and "not in-progress" in caught.value.provider_message


# --- The account, its numbers and caller ids -----------------------------------------------


def test_fetch_account_reads_the_account_of_the_credentials(fake_twilio) -> None:
    fake_twilio.account_type = "Trial"

    account = telephony.fetch_account()

    assert account == telephony.ProviderAccount(
        sid=ACCOUNT_SID, name="Callcenter", status="active", type="Trial"
    )
    [request] = fake_twilio.requests
    assert (request.method, request.path) == ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}.json")


def test_fetch_account_with_refused_credentials_is_an_auth_failure(fake_twilio, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "0" * 32

    with pytest.raises(TelephonyRejected) as caught:
        telephony.fetch_account()

    assert caught.value.is_auth_failure


def test_fetch_account_takes_its_own_timeout_and_retries(fake_twilio) -> None:
    fake_twilio.fail_next(503, times=3)

    with pytest.raises(TelephonyUnavailable):
        telephony.fetch_account(timeout=1.0, retries=1)

    assert len(fake_twilio.requests) == 2


def test_list_account_numbers_follows_every_page_of_both_lists(fake_twilio, monkeypatch) -> None:
    monkeypatch.setattr(telephony.twilio, "LIST_PAGE_SIZE", 2)
    owned = [fake_twilio.add_number(f"+3491000000{n}")["phone_number"] for n in range(5)]
    fake_twilio.add_caller_id("+34600000001")

    numbers = telephony.list_account_numbers()

    assert numbers.owned == frozenset(owned)
    assert numbers.verified == frozenset({"+34600000001"})
    assert numbers.allows("+34910000004") and numbers.allows("+34600000001")
    assert not numbers.allows("+34600000002")
    pages = fake_twilio.requests_to("GET", "/IncomingPhoneNumbers.json")
    assert [request.query.get("Page") for request in pages] == [None, ["1"], ["2"]]
    assert len(fake_twilio.requests_to("GET", "/OutgoingCallerIds.json")) == 1


@pytest.mark.parametrize(
    ("status", "error"), [(500, TelephonyUnavailable), (403, TelephonyRejected)]
)
def test_a_list_page_refused_fails_like_any_request(
    fake_twilio, monkeypatch, status: int, error: type[Exception]
) -> None:
    # given a list whose second page Twilio refuses (the SDK raises its bare exception then)
    monkeypatch.setattr(telephony.twilio, "LIST_PAGE_SIZE", 1)
    fake_twilio.add_number("+34910000001")
    fake_twilio.add_number("+34910000002")
    fake_twilio.fail_next(status, when=lambda request: request.query.get("Page") == ["1"])

    with pytest.raises(error) as caught:
        telephony.list_account_numbers(retries=0)

    assert caught.value.status == status


def test_find_calls_of_a_failing_list_is_unavailable(fake_twilio) -> None:
    # a 5xx on the Calls list raised the SDK's bare TwilioException through the adapter
    fake_twilio.fail_next(503, times=4)

    with pytest.raises(TelephonyUnavailable):
        telephony.find_calls(
            to="+34600000001",
            from_=None,
            created_after=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        )


# --- The account's numbers ----------------------------------------------------------------


def test_incoming_numbers_lists_where_each_number_sends_its_calls(fake_twilio) -> None:
    fake_twilio.add_number("+34910000000")
    fake_twilio.add_number("+34910000001", voice_application_sid="AP" + "1" * 32)

    numbers = {number.phone_number: number for number in telephony.incoming_numbers()}

    [request] = fake_twilio.requests
    assert (request.method, request.path) == (
        "GET",
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json",
    )
    assert numbers["+34910000000"].voice_url == ""  # not pointed anywhere yet
    assert numbers["+34910000000"].sid.startswith("PN")
    assert numbers["+34910000001"].voice_application_sid == "AP" + "1" * 32


def test_point_number_sends_its_calls_to_our_webhooks(fake_twilio) -> None:
    sid = fake_twilio.add_number("+34910000000")["sid"]

    number = telephony.point_number(
        sid=sid,
        voice_url=f"{APP}/twilio/inbound",
        fallback_url=f"{APP}/twilio/inbound/fallback",
        status_callback=f"{APP}/twilio/inbound/status",
    )

    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{sid}.json"
    assert request.form == {
        "VoiceUrl": [f"{APP}/twilio/inbound"],
        "VoiceMethod": ["POST"],
        "VoiceFallbackUrl": [f"{APP}/twilio/inbound/fallback"],
        "VoiceFallbackMethod": ["POST"],
        "StatusCallback": [f"{APP}/twilio/inbound/status"],
        "StatusCallbackMethod": ["POST"],
    }
    assert number.voice_url == f"{APP}/twilio/inbound"
    assert fake_twilio.numbers["+34910000000"]["status_callback"] == f"{APP}/twilio/inbound/status"


def test_point_number_retries_a_5xx_and_refuses_an_unknown_number(fake_twilio) -> None:
    sid = fake_twilio.add_number("+34910000000")["sid"]
    fake_twilio.fail_next(503, code=None)

    telephony.point_number(sid=sid, voice_url=APP, fallback_url=APP, status_callback=APP)
    with pytest.raises(TelephonyRejected) as caught:
        telephony.point_number(
            sid="PN" + "0" * 32, voice_url=APP, fallback_url=APP, status_callback=APP
        )

    assert len(fake_twilio.requests) == 3
    assert (caught.value.status, caught.value.code) == (404, 20404)


# --- url_with_retries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{APP}/status", f"{APP}/status#rc=3"),
        (f"{APP}/status?call=7", f"{APP}/status?call=7#rc=3"),
        (f"{APP}/status#ct=1000&rp=all", f"{APP}/status#rc=3&ct=1000&rp=all"),
        (f"{APP}/status#rc=1&ct=1000", f"{APP}/status#rc=3&ct=1000"),
    ],
)
def test_url_with_retries_sets_the_retry_count_override(url, expected) -> None:
    assert telephony.url_with_retries(url) == expected


def test_url_with_retries_refuses_a_count_twilio_does_not_accept() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        telephony.url_with_retries(f"{APP}/status", retry_count=6)


# --- Webhook signatures -----------------------------------------------------------------

STATUS_URL = f"{APP}/twilio/calls/7/status?attempt=2"
STATUS_PARAMS = {
    "CallSid": "CA" + "ab" * 16,
    "CallStatus": "in-progress",
    "AccountSid": ACCOUNT_SID,
    "SequenceNumber": "1",
}


@pytest.fixture
def twilio_mode(settings) -> None:
    settings.TELEPHONY_BACKEND = "twilio"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN


def test_sign_request_computes_twilios_signature(twilio_mode) -> None:
    # Twilio's recipe: URL, then each parameter's name and value sorted by name,
    # HMAC-SHA1 with the auth token, base64.
    signed = STATUS_URL + "".join(name + STATUS_PARAMS[name] for name in sorted(STATUS_PARAMS))
    expected = base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()

    assert telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS) == expected


def test_signature_is_valid_accepts_what_sign_request_signed(twilio_mode) -> None:
    signature = telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS)

    assert telephony.signature_is_valid(url=STATUS_URL, params=STATUS_PARAMS, signature=signature)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (STATUS_URL, {**STATUS_PARAMS, "CallStatus": "completed"}),
        (STATUS_URL, {**STATUS_PARAMS, "Extra": "1"}),
        (STATUS_URL.replace("attempt=2", "attempt=3"), STATUS_PARAMS),
        (STATUS_URL.replace("https://", "http://"), STATUS_PARAMS),
        (STATUS_URL.replace("/7/", "/8/"), STATUS_PARAMS),
    ],
)
def test_signature_is_valid_refuses_a_tampered_request(twilio_mode, url, params) -> None:
    signature = telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS)

    assert not telephony.signature_is_valid(url=url, params=params, signature=signature)


def test_signature_is_valid_reads_a_query_dict_with_repeated_names(twilio_mode) -> None:
    params = {"CallSid": "CA" + "ab" * 16, "Digits": ["1", "2"]}
    signature = telephony.sign_request(url=STATUS_URL, params=params)
    posted = QueryDict(f"CallSid=CA{'ab' * 16}&Digits=2&Digits=1")
    tampered = QueryDict(f"CallSid=CA{'ab' * 16}&Digits=2&Digits=3")

    assert telephony.signature_is_valid(url=STATUS_URL, params=posted, signature=signature)
    assert not telephony.signature_is_valid(url=STATUS_URL, params=tampered, signature=signature)


def test_sign_request_leaves_the_connection_override_fragment_out(twilio_mode) -> None:
    # The fragment stays with the sender; the server sees, and checks, the URL without it.
    signature = telephony.sign_request(
        url=telephony.url_with_retries(STATUS_URL), params=STATUS_PARAMS
    )

    assert telephony.signature_is_valid(url=STATUS_URL, params=STATUS_PARAMS, signature=signature)


def test_sign_request_signs_the_fragment_when_asked(twilio_mode) -> None:
    registered = telephony.url_with_retries(STATUS_URL)
    signed = registered + "".join(name + STATUS_PARAMS[name] for name in sorted(STATUS_PARAMS))
    expected = base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()

    signature = telephony.sign_request(url=registered, params=STATUS_PARAMS, keep_fragment=True)

    assert signature == expected
    assert signature != telephony.sign_request(url=registered, params=STATUS_PARAMS)


def test_signature_is_valid_accepts_a_signature_with_or_without_the_fragment(twilio_mode) -> None:
    registered = telephony.url_with_retries(STATUS_URL)
    signed = registered + "".join(name + STATUS_PARAMS[name] for name in sorted(STATUS_PARAMS))
    with_fragment = base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()
    without_fragment = telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS)
    other_fragment = telephony.sign_request(
        url=telephony.url_with_retries(STATUS_URL, retry_count=5),
        params=STATUS_PARAMS,
        keep_fragment=True,
    )

    for signature in (with_fragment, without_fragment):
        assert telephony.signature_is_valid(
            url=registered, params=STATUS_PARAMS, signature=signature
        )
    assert not telephony.signature_is_valid(
        url=STATUS_URL, params=STATUS_PARAMS, signature=with_fragment
    )
    assert not telephony.signature_is_valid(
        url=registered, params=STATUS_PARAMS, signature=other_fragment
    )


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
def test_signature_is_valid_refuses_a_missing_or_wrong_signature(twilio_mode, signature) -> None:
    assert not telephony.signature_is_valid(
        url=STATUS_URL, params=STATUS_PARAMS, signature=signature
    )


def test_signature_is_valid_refuses_everything_without_an_auth_token(settings) -> None:
    settings.TELEPHONY_BACKEND = "twilio"
    settings.TWILIO_AUTH_TOKEN = ""
    # What anyone could compute with an empty key.
    forged = base64.b64encode(hmac.new(b"", STATUS_URL.encode(), hashlib.sha1).digest()).decode()

    assert not telephony.signature_is_valid(url=STATUS_URL, params={}, signature=forged)


def test_webhook_auth_token_is_twilios_auth_token_with_twilio(twilio_mode) -> None:
    assert telephony.webhook_auth_token() == AUTH_TOKEN


def test_sandbox_webhook_token_is_stable_secret_and_not_the_auth_token(settings) -> None:
    settings.TELEPHONY_BACKEND = "sandbox"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.SECRET_KEY = "a" * 50 + "bcdef"

    token = telephony.webhook_auth_token()
    again = telephony.webhook_auth_token()
    settings.SECRET_KEY = "z" * 50 + "vwxyz"
    other = telephony.webhook_auth_token()

    assert token == again and token != AUTH_TOKEN and token != other
    assert len(token) >= 32


def test_sandbox_signatures_round_trip_and_differ_from_twilios(settings) -> None:
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TELEPHONY_BACKEND = "sandbox"
    sandbox = telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS)
    settings.TELEPHONY_BACKEND = "twilio"
    twilio = telephony.sign_request(url=STATUS_URL, params=STATUS_PARAMS)
    settings.TELEPHONY_BACKEND = "sandbox"

    assert sandbox != twilio
    assert telephony.signature_is_valid(url=STATUS_URL, params=STATUS_PARAMS, signature=sandbox)
    assert not telephony.signature_is_valid(url=STATUS_URL, params=STATUS_PARAMS, signature=twilio)


# --- The backend: picked once from TELEPHONY_BACKEND ------------------------------------


class CountingBackend(SandboxBackend):
    """A backend named by its dotted path, as an operator may name their own."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1


class NotABackend:
    pass


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("twilio", TwilioBackend),
        ("sandbox", SandboxBackend),
        ("calls.telephony.sandbox.SandboxBackend", SandboxBackend),
        ("calls.telephony.twilio.TwilioBackend", TwilioBackend),
    ],
)
def test_backend_is_the_class_telephony_backend_names(settings, name, expected) -> None:
    settings.TELEPHONY_BACKEND = name

    assert type(telephony.backend()) is expected


def test_backend_is_loaded_once_until_the_setting_changes(settings) -> None:
    # given a backend named by its dotted path
    CountingBackend.made = 0
    settings.TELEPHONY_BACKEND = f"{__name__}.CountingBackend"

    # when it is asked for twice
    first, second = telephony.backend(), telephony.backend()

    # then it was made once; a change of the setting (override_settings too) loads anew
    assert first is second and isinstance(first, CountingBackend)
    assert CountingBackend.made == 1
    settings.TELEPHONY_BACKEND = "twilio"
    assert isinstance(telephony.backend(), TwilioBackend)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("calls.telephony.nowhere.Backend", "cannot import calls.telephony.nowhere.Backend"),
        (f"{__name__}.NotABackend", "is not a calls.telephony.base.TelephonyBackend"),
    ],
)
def test_backend_that_is_none_fails_loudly_naming_it(settings, name, problem) -> None:
    settings.TELEPHONY_BACKEND = name

    with pytest.raises(ImproperlyConfigured, match=problem) as raised:
        telephony.backend()

    assert f"TELEPHONY_BACKEND={name!r}" in str(raised.value)


def test_backends_say_what_they_can(settings) -> None:
    settings.TELEPHONY_BACKEND = "twilio"
    twilio = telephony.backend()
    settings.TELEPHONY_BACKEND = "sandbox"
    sandbox = telephony.backend()

    assert (twilio.simulated, twilio.rings_our_numbers) == (False, False)
    assert (sandbox.simulated, sandbox.rings_our_numbers) == (True, True)
    assert twilio.urlpatterns() == []
    assert [route.name for route in sandbox.urlpatterns()] == ["sandbox_recording"]
    with pytest.raises(NotImplementedError):
        twilio.ring_in(from_="+34600000001", to="+34910000000", persona="interested")


# --- Layering ---------------------------------------------------------------------------


def test_only_the_twilio_backend_imports_the_twilio_sdk() -> None:
    # given every module of the project outside its tests and virtualenv
    root = Path(__file__).resolve().parents[2]
    folders = [
        folder
        for folder in root.iterdir()
        if folder.is_dir() and not folder.name.startswith(".") and folder.name != "tests"
    ]
    importers = []
    for path in [*root.glob("*.py"), *(p for folder in folders for p in folder.rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == "twilio" or name.startswith("twilio.") for name in names):
                importers.append(path.relative_to(root).as_posix())

    # then only calls/telephony/twilio.py does
    assert sorted(set(importers)) == ["calls/telephony/twilio.py"]


def test_telephony_core_does_not_import_the_sandbox() -> None:
    # The sandbox builds on the package's base; the package reaches it only through
    # TELEPHONY_BACKEND (import_string), so no import chain leads back to it.
    graph = grimp.build_graph("calls")
    sandbox = "calls.telephony.sandbox"
    core = ["calls.telephony", "calls.telephony.base", "calls.telephony.twilio"]
    core += ["calls.telephony.twiml", "calls.telephony.signatures"]

    chains = {module: graph.find_shortest_chain(module, sandbox) for module in core}

    assert chains == dict.fromkeys(core)
    assert graph.find_shortest_chain(f"{sandbox}.carrier", "calls.telephony.base") is not None
