from __future__ import annotations

import datetime
import itertools
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import telephony
from calls.models import Call, CallEvent
from calls.webhooks import SIGNATURE_FAILURES
from campaigns.models import Contact

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


def make_call(campaign, phone: str = "+34600000002", **fields) -> Call:
    contact = Contact.objects.create(campaign=campaign, phone=phone, state=Contact.State.CALLING)
    fields.setdefault("provider_sid", SID)
    return Call.objects.create(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.DIALING,
        from_number="+34910000000",
        to_number=phone,
        dialed_at=DIALED_AT,
        **fields,
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
            "Price": "-0.01300",
            "PriceUnit": "USD",
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
    call = make_call(campaign)

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
    call = make_call(campaign)
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
    call = make_call(campaign)
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
    call = make_call(campaign)
    before = failures()

    # when
    response = post_signed(client, call.pk, status_events()[1], base_url="http://testserver")

    # then: the public URL Twilio was given is what counts
    assert response.status_code == 403
    assert failures() == before + 1
    assert not CallEvent.objects.exists()


def test_status_webhook_signature_covers_the_query_string(client, campaign) -> None:
    call = make_call(campaign)
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
    call = make_call(campaign)

    response = client.post(reverse("calls:status", kwargs={"call_id": call.pk}), status_events()[1])

    assert response.status_code == 403


def test_status_webhook_accepts_only_post(client, campaign) -> None:
    call = make_call(campaign)

    response = client.get(reverse("calls:status", kwargs={"call_id": call.pk}))

    assert response.status_code == 405


def test_status_webhook_folds_ordered_callbacks(client, campaign) -> None:
    # given
    call = make_call(campaign)

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
    assert (call.price, call.price_unit) == (Decimal("0.013"), "USD")
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
    ordered = make_call(campaign, "+34600000100", provider_sid="CA-ordered")
    for params in status_events(sid="CA-ordered"):
        post_signed(client, ordered.pk, params)
    expected = outcome(ordered)

    for number, order in enumerate(itertools.permutations(range(4))):
        sid = f"CA-perm-{number}"
        call = make_call(campaign, f"+346002{number:05d}", provider_sid=sid)
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
    call = make_call(campaign)

    response = post_signed(client, call.pk, status_events(sid="CA" + "7" * 32)[3])

    assert response.status_code == 204
    assert CallEvent.objects.get().call is None
    call.refresh_from_db()
    assert call.status == Call.Status.DIALING


def test_status_webhook_stores_a_retried_callback_once(client, campaign) -> None:
    call = make_call(campaign)

    first = post_signed(client, call.pk, status_events()[3])
    again = post_signed(client, call.pk, status_events()[3])

    assert (first.status_code, again.status_code) == (204, 204)
    assert CallEvent.objects.count() == 1


def test_status_webhook_answers_with_a_few_single_row_statements(client, campaign) -> None:
    call = make_call(campaign)

    with CaptureQueriesContext(connection) as queries:
        response = post_signed(client, call.pk, status_events()[1])

    assert response.status_code == 204
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper()]
    # Read the call, insert the event, advance the call, read it back: each by key.
    assert len(statements) == 4, statements
    assert [sql.split()[0] for sql in statements] == ["SELECT", "INSERT", "UPDATE", "SELECT"]
    assert all(f'"calls_call"."id" = {call.pk}' in sql for sql in statements if "INSERT" not in sql)
