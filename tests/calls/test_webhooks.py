from __future__ import annotations

import datetime
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import links, telephony
from calls.callbacks import PRICE_FIRST_CHECK
from calls.models import Call, CallEvent
from calls.webhooks import SIGNATURE_FAILURES
from campaigns.models import Contact
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db

APP_URL = "https://calls.example.com"
SID = "CA" + "0" * 32
DIALED_AT = datetime.datetime(2026, 3, 2, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _twilio_settings(settings) -> None:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "test-auth-token"


def dialed_call(campaign, **fields) -> Call:
    """A call the dialer placed at DIALED_AT, its SID known: what these callbacks are about."""
    return CallFactory(
        dialing=True,
        contact__campaign=campaign,
        **{"provider_sid": SID, "dialed_at": DIALED_AT, **fields},
    )


def rfc2822(seconds: int) -> str:
    return (DIALED_AT + datetime.timedelta(seconds=seconds)).strftime("%a, %d %b %Y %H:%M:%S +0000")


def status_events(sid: str = SID, *, answered_by: str = "human") -> list[dict[str, str]]:
    """An answered call's callbacks (initiated, ringing, answered, completed), in order."""
    base = {"CallSid": sid, "AccountSid": "AC" + "1" * 32, "Direction": "outbound-api"}
    return [
        {**base, "CallStatus": "initiated", "SequenceNumber": "0", "Timestamp": rfc2822(0)},
        {**base, "CallStatus": "ringing", "SequenceNumber": "1", "Timestamp": rfc2822(2)},
        {**base, "CallStatus": "in-progress", "SequenceNumber": "2", "Timestamp": rfc2822(9)},
        {
            **base,
            "CallStatus": "completed",
            "SequenceNumber": "3",
            "Timestamp": rfc2822(51),
            "CallDuration": "42",
            "AnsweredBy": answered_by,
        },
    ]


def post_signed(client, call_id: int, params: dict[str, str], *, base_url: str = APP_URL):
    """POST ``params`` to the status webhook signed as Twilio signs for ``base_url``."""
    path = reverse("calls:status", kwargs={"call_id": call_id})
    signature = telephony.sign_request(url=base_url + path, params=params)
    return client.post(path, params, headers={"x-twilio-signature": signature})


def failures() -> float:
    return SIGNATURE_FAILURES.labels(view="call_status")._value.get()


def test_status_url_is_the_documented_one() -> None:
    assert reverse("calls:status", kwargs={"call_id": 7}) == "/twilio/calls/7/status"


def test_status_webhook_applies_a_signed_callback(client, campaign) -> None:
    call = dialed_call(campaign)

    response = post_signed(client, call.pk, status_events()[1])

    assert response.status_code == 204
    assert response.content == b""
    call.refresh_from_db()
    assert call.status == Call.Status.RINGING
    event = CallEvent.objects.get()
    assert (event.call, event.kind, event.sequence_number) == (call, "status", 1)
    assert event.payload == status_events()[1]


def test_status_webhook_refuses_a_missing_signature(client, campaign) -> None:
    # given
    call = dialed_call(campaign)
    before = failures()

    # when
    response = client.post(reverse("calls:status", kwargs={"call_id": call.pk}), status_events()[1])

    # then
    assert response.status_code == 403
    assert response.content == b""
    assert failures() == before + 1
    assert not CallEvent.objects.exists()
    call.refresh_from_db()
    assert call.status == Call.Status.DIALING


def test_status_webhook_refuses_a_wrong_signature(client, campaign) -> None:
    call = dialed_call(campaign)
    params = status_events()[3]
    path = reverse("calls:status", kwargs={"call_id": call.pk})
    signed_for_other_params = telephony.sign_request(
        url=APP_URL + path, params={**params, "CallStatus": "busy"}
    )
    before = failures()

    response = client.post(path, params, headers={"x-twilio-signature": signed_for_other_params})

    assert response.status_code == 403
    assert failures() == before + 1
    assert not CallEvent.objects.exists()
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.CALLING


def test_status_webhook_checks_against_app_url_not_the_request_host(client, campaign) -> None:
    # given: a signature that would be right for the host the request reached
    call = dialed_call(campaign)
    before = failures()

    # when
    response = post_signed(client, call.pk, status_events()[1], base_url="http://testserver")

    # then: the public URL Twilio was given is what counts
    assert response.status_code == 403
    assert failures() == before + 1
    assert not CallEvent.objects.exists()


def test_status_webhook_signature_covers_the_query_string(client, campaign) -> None:
    call = dialed_call(campaign)
    path = reverse("calls:status", kwargs={"call_id": call.pk}) + "?attempt=1"
    params = status_events()[1]
    signature = telephony.sign_request(url=APP_URL + path, params=params)

    accepted = client.post(path, params, headers={"x-twilio-signature": signature})
    refused = client.post(
        path.replace("attempt=1", "attempt=2"), params, headers={"x-twilio-signature": signature}
    )

    assert (accepted.status_code, refused.status_code) == (204, 403)


def test_status_webhook_checks_signatures_in_debug_too(client, campaign, settings) -> None:
    settings.DEBUG = True
    call = dialed_call(campaign)

    response = client.post(reverse("calls:status", kwargs={"call_id": call.pk}), status_events()[1])

    assert response.status_code == 403


def test_status_webhook_accepts_only_post(client, campaign) -> None:
    call = dialed_call(campaign)

    response = client.get(reverse("calls:status", kwargs={"call_id": call.pk}))

    assert response.status_code == 405


def test_status_webhook_folds_ordered_callbacks(client, campaign) -> None:
    # given
    call = dialed_call(campaign)

    # when
    codes = [post_signed(client, call.pk, params).status_code for params in status_events()]

    # then
    assert codes == [204] * 4
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED
    assert call.answered_at == DIALED_AT + datetime.timedelta(seconds=9)
    assert call.ended_at == DIALED_AT + datetime.timedelta(seconds=51)
    assert call.duration_seconds == 42
    assert call.answered_by == "human"
    # Twilio prices the call later, on its Call resource: the price tick asks for it.
    assert (call.price, call.price_status) == (None, Call.PriceStatus.PENDING)
    assert call.price_check_at == call.ended_at + PRICE_FIRST_CHECK
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.DONE


def outcome(call: Call) -> tuple:
    call.refresh_from_db()
    contact = Contact.objects.get(pk=call.contact_id)
    return (
        call.status,
        call.answered_at,
        call.ended_at,
        call.duration_seconds,
        call.answered_by,
        call.price,
        call.price_unit,
        contact.state,
        contact.state_reason,
        call.events.count(),
    )


def test_status_webhook_every_order_of_the_callbacks_ends_the_same(client, campaign) -> None:
    # given: what the callbacks make of a call when they arrive in order
    ordered = dialed_call(campaign, provider_sid="CA-ordered")
    for params in status_events(sid="CA-ordered"):
        post_signed(client, ordered.pk, params)
    expected = outcome(ordered)

    for number, order in enumerate(itertools.permutations(range(4))):
        sid = f"CA-perm-{number}"
        call = dialed_call(campaign, provider_sid=sid)
        events = status_events(sid=sid)
        # when: they arrive in this order, the first one retried at the end
        for index in (*order, order[0]):
            assert post_signed(client, call.pk, events[index]).status_code == 204

        # then
        assert outcome(call) == expected, order


def test_status_webhook_keeps_a_stray_callback(client, campaign, caplog) -> None:
    response = post_signed(client, 424242, status_events()[3])

    assert response.status_code == 204
    event = CallEvent.objects.get()
    assert event.call is None
    assert event.provider_sid == SID
    assert "424242" in caplog.text


def test_status_webhook_keeps_a_callback_with_another_calls_sid(client, campaign) -> None:
    call = dialed_call(campaign)

    response = post_signed(client, call.pk, status_events(sid="CA" + "7" * 32)[3])

    assert response.status_code == 204
    assert CallEvent.objects.get().call is None
    call.refresh_from_db()
    assert call.status == Call.Status.DIALING


def test_status_webhook_stores_a_retried_callback_once(client, campaign) -> None:
    call = dialed_call(campaign)

    first = post_signed(client, call.pk, status_events()[3])
    again = post_signed(client, call.pk, status_events()[3])

    assert (first.status_code, again.status_code) == (204, 204)
    assert CallEvent.objects.count() == 1


def test_status_webhook_answers_with_a_few_single_row_statements(client, campaign) -> None:
    call = dialed_call(campaign)

    with CaptureQueriesContext(connection) as queries:
        response = post_signed(client, call.pk, status_events()[1])

    assert response.status_code == 204
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper()]
    # Read the call, insert the event, advance the call, read it back: each by key.
    assert len(statements) == 4, statements
    assert [sql.split()[0] for sql in statements] == ["SELECT", "INSERT", "UPDATE", "SELECT"]
    assert all(f'"calls_call"."id" = {call.pk}' in sql for sql in statements if "INSERT" not in sql)


def test_status_webhook_takes_no_price_from_a_callback(client, campaign) -> None:
    # given: a final callback carrying what Twilio never sends in one
    call = dialed_call(campaign)
    final = {**status_events()[3], "Price": "-0.01300", "PriceUnit": "USD", "CallPrice": "-1"}

    # when
    assert post_signed(client, call.pk, final).status_code == 204

    # then: the price comes from Twilio's Call resource, not from here
    call.refresh_from_db()
    assert (call.price, call.price_unit, call.price_status) == (
        None,
        "",
        Call.PriceStatus.PENDING,
    )


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_status_webhook_a_call_twilio_does_not_charge_is_not_charged(
    client, campaign, status
) -> None:
    call = dialed_call(campaign)
    final = {"CallSid": SID, "CallStatus": status, "SequenceNumber": "1", "Timestamp": rfc2822(9)}

    assert post_signed(client, call.pk, final).status_code == 204

    call.refresh_from_db()
    assert (call.price_status, call.price_check_at) == (Call.PriceStatus.NOT_CHARGED, None)


# --- Signatures over the callback URLs registered with connection overrides -----------------

# What Twilio posts to each callback of a call.
RECORDING_URL = f"https://api.twilio.com/2010-04-01/Accounts/AC{'1' * 32}/Recordings/RE{'1' * 32}"
CALLBACKS = {
    "status": {"CallSid": SID, "CallStatus": "ringing", "SequenceNumber": "1"},
    "amd": {"CallSid": SID, "AnsweredBy": "human", "MachineDetectionDuration": "2600"},
    "recording": {
        "CallSid": SID,
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": RECORDING_URL,
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    },
}
# What each makes of the call, once folded in.
FOLDED = {"status": "ringing", "amd": "human", "recording": "RE" + "1" * 32}


def post_signed_over(client, name: str, call_id: int, params: dict[str, str], signed_url: str):
    """POST ``params`` to webhook ``name`` of the call, signed over ``signed_url``, as
    Twilio may sign (with or without the fragment of the URL it was given)."""
    path = reverse(f"calls:{name}", kwargs={"call_id": call_id})
    signature = telephony.sign_request(url=signed_url, params=params, keep_fragment=True)
    return client.post(path, params, headers={"x-twilio-signature": signature})


def folded(call: Call, name: str) -> str:
    """What callback ``name`` changed on ``call``."""
    call.refresh_from_db()
    return {
        "status": call.status,
        "amd": call.answered_by,
        "recording": call.recording_sid,
    }[name]


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_a_callback_signed_over_the_url_with_its_registered_fragment_is_accepted(
    client, campaign, name
) -> None:
    # given: the URL the dialer gave Twilio, fragment and all
    call = dialed_call(campaign)
    params = CALLBACKS[name]
    registered = links.callback_url(name, call.pk)
    assert registered.endswith(f"/{name}#rc=3")
    before = failures_of(name)

    # when Twilio signs over it, fragment included
    response = post_signed_over(client, name, call.pk, params, registered)

    # then
    assert response.status_code == 204
    assert failures_of(name) == before
    assert CallEvent.objects.filter(call=call).count() == 1
    assert folded(call, name) == FOLDED[name]


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_a_callback_signed_over_the_url_without_its_fragment_is_accepted(
    client, campaign, name
) -> None:
    call = dialed_call(campaign)
    params = CALLBACKS[name]
    plain = links.webhook_url(name, call.pk)

    response = post_signed_over(client, name, call.pk, params, plain)

    assert response.status_code == 204
    assert CallEvent.objects.filter(call=call).count() == 1


@pytest.mark.parametrize("name", sorted(CALLBACKS))
@pytest.mark.parametrize(
    "fragment", ["#rc=5", "#rc=3&ct=1000", "#rc=", "#", "#ct=3"], ids=lambda f: f or "empty"
)
def test_a_callback_signed_over_another_fragment_is_refused(
    client, campaign, name, fragment
) -> None:
    # given: a signature over a URL we never gave Twilio
    call = dialed_call(campaign)
    params = CALLBACKS[name]
    before = failures_of(name)

    # when
    signed_url = links.webhook_url(name, call.pk) + fragment
    response = post_signed_over(client, name, call.pk, params, signed_url)

    # then
    assert response.status_code == 403
    assert failures_of(name) == before + 1
    assert not CallEvent.objects.exists()


def test_a_callback_signed_over_another_calls_registered_url_is_refused(client, campaign) -> None:
    call = dialed_call(campaign)
    other = dialed_call(campaign, provider_sid="CA" + "3" * 32)
    params = CALLBACKS["status"]

    response = post_signed_over(
        client, "status", call.pk, params, links.callback_url("status", other.pk)
    )

    assert response.status_code == 403
    assert not CallEvent.objects.exists()


def test_a_callback_signed_over_another_callbacks_registered_url_is_refused(
    client, campaign
) -> None:
    call = dialed_call(campaign)
    params = CALLBACKS["status"]

    response = post_signed_over(
        client, "status", call.pk, params, links.callback_url("amd", call.pk)
    )

    assert response.status_code == 403


def test_a_callback_with_a_query_accepts_only_a_signature_over_what_arrived(
    client, campaign
) -> None:
    # The registered URL has no query: with one, no fragment is put back.
    call = dialed_call(campaign)
    params = CALLBACKS["status"]
    path = reverse("calls:status", kwargs={"call_id": call.pk}) + "?attempt=1"
    with_fragment = telephony.sign_request(
        url=f"{APP_URL}{path}#rc=3", params=params, keep_fragment=True
    )

    response = client.post(path, params, headers={"x-twilio-signature": with_fragment})

    assert response.status_code == 403


@pytest.mark.parametrize("name", ["answer", "turn", "voicemail", "fallback", "transfer-ended"])
@pytest.mark.parametrize("fragment", ["#rc=3", "#rc=5"])
def test_a_twiml_webhook_signed_with_a_fragment_is_refused(
    client, campaign, name, fragment
) -> None:
    # given: views never registered with a fragment accept only the plain URL
    call = dialed_call(campaign)
    params = {"CallSid": SID, "CallStatus": "in-progress"}
    path = reverse(f"calls:{name}", kwargs={"call_id": call.pk})

    # when
    signature = telephony.sign_request(
        url=APP_URL + path + fragment, params=params, keep_fragment=True
    )
    response = client.post(path, params, headers={"x-twilio-signature": signature})

    # then
    assert response.status_code == 403
    assert not call.turns.exists()


def failures_of(name: str) -> float:
    view = {"status": "call_status", "amd": "machine_detection", "recording": "recording"}[name]
    return SIGNATURE_FAILURES.labels(view=view)._value.get()
