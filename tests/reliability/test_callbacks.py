"""Fault suite, callbacks: Twilio's status callbacks duplicated, delayed and shuffled end
a call, and its contact, exactly as the same callbacks in order do.

Hypothesis draws the deliveries: each callback of a call's life one to three times
(Twilio retries), in any order, with the dialer's own answer (the SID) anywhere among
them, and the contact's next attempt dialled as soon as it may be, so that late
callbacks of the first call arrive while the second one is live. Each delivery is signed
and posted to the real webhook views. No callback carries a price (Twilio sends none):
the price comes from Twilio's Call resource, asked for by the price tick.
"""

from __future__ import annotations

import datetime
import email.utils
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import kombu.exceptions
import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import dialing, links
from calls.callbacks import PRICE_FIRST_CHECK
from calls.models import Call, CallEvent, CallStatus, PriceStatus
from campaigns.models import Campaign, Contact
from tests.factories import CallFactory
from tests.reliability.carrier import BUSY, Carrier, ScriptedTwilio, signs_fragment
from tests.reliability.conftest import post_signed, webhook_path

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("twilio_settings")]

DIALED_AT = datetime.datetime(2026, 3, 2, 10, 0, 0, tzinfo=datetime.UTC)
CALLER = "+34910000000"


def at(seconds: int) -> str:
    """Twilio's RFC 2822 Timestamp, ``seconds`` after the dial."""
    return email.utils.format_datetime(DIALED_AT + datetime.timedelta(seconds=seconds))


def status(sequence: int, call_status: str, seconds: int, **extra: str) -> tuple[str, dict]:
    return (
        "status",
        {
            "CallStatus": call_status,
            "SequenceNumber": str(sequence),
            "Timestamp": at(seconds),
            "Direction": "outbound-api",
            **extra,
        },
    )


# Each call's life as Twilio reports it (StatusCallbackEvent initiated, ringing, answered,
# completed), with the asynchronous AMD verdict where a machine answered.
SCENARIOS: dict[str, list[tuple[str, dict]]] = {
    "answered": [
        status(0, "initiated", 0),
        status(1, "ringing", 2),
        status(2, "in-progress", 9),
        status(3, "completed", 51, CallDuration="42", AnsweredBy="human"),
    ],
    "voicemail": [
        status(0, "initiated", 0),
        status(1, "ringing", 2),
        status(2, "in-progress", 7),
        ("amd", {"AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "4100"}),
        status(3, "completed", 30, CallDuration="23", AnsweredBy="machine_end_beep"),
    ],
    "no-answer": [
        status(0, "initiated", 0),
        status(1, "ringing", 2),
        status(2, "no-answer", 32, CallDuration="0"),
    ],
    "busy": [
        status(0, "initiated", 0),
        status(1, "busy", 3, CallDuration="0", SipResponseCode="486"),
    ],
    "invalid": [
        status(0, "initiated", 0),
        status(
            1,
            "failed",
            1,
            CallDuration="0",
            ErrorCode="13224",
            ErrorMessage="Invalid phone number",
        ),
    ],
    "canceled": [
        status(0, "initiated", 0),
        status(1, "ringing", 2),
        status(2, "canceled", 12, CallDuration="0"),
    ],
}


@dataclass
class Delivery:
    """Who does what, in order: a callback delivered (index into the scenario), the
    dialer learning the SID from Twilio's answer, reconciliation, the next attempt."""

    kind: str  # "callback", "sid", "reconcile", "redial"
    index: int = -1


def dialing_call(campaign: Campaign) -> Call:
    """A call the dialer claimed and asked Twilio for: dialing, its SID not yet known."""
    return CallFactory(
        dialing=True,
        contact__campaign=campaign,
        contact__attempts=1,
        contact__variables={"first_name": "Ana"},
        from_number=CALLER,
        dialed_at=DIALED_AT,
    )


def redial(call: Call) -> Call | None:
    """The contact's next attempt, as the dispatcher and dialer make it, once the contact
    waits for one; None while it may not be dialled."""
    contact = Contact.objects.get(pk=call.contact_id)
    if contact.state != Contact.State.RETRY:
        return None
    Contact.objects.filter(pk=contact.pk).update(
        state=Contact.State.CALLING, attempts=contact.attempts + 1, next_attempt_at=None
    )
    return CallFactory(
        campaign=call.campaign,
        contact=contact,
        attempt=call.attempt + 1,
        status=CallStatus.QUEUED,
        provider_sid="CA" + uuid.uuid4().hex,
        from_number=CALLER,
        to_number=contact.phone,
        dialed_at=timezone.now(),
    )


def play(
    client,
    campaign: Campaign,
    scenario: str,
    deliveries: list[Delivery],
    *,
    before: Callable[[Call, str], None] | None = None,
) -> dict:
    """Run ``deliveries`` of ``scenario`` against a new call (``before`` hears of the
    call and its SID first); the call's final state."""
    call = dialing_call(campaign)
    sid = "CA" + uuid.uuid4().hex
    if before is not None:
        before(call, sid)
    events = SCENARIOS[scenario]
    redialled: Call | None = None
    redial_wanted = False
    for delivery in deliveries:
        if delivery.kind == "sid":
            dialing._save_sid(call, sid)  # Twilio's answer to the dial request arrives
        elif delivery.kind == "redial":
            redial_wanted = True
        elif delivery.kind == "reconcile":
            # Long after the call: whatever is still live is settled with Twilio's record.
            dialing.reconcile_calls(now=timezone.now())
        else:
            webhook, params = events[delivery.index]
            response = post_signed(
                client, webhook_path(webhook, call.pk), {**params, "CallSid": sid}
            )
            assert response.status_code == 204, response
        if redial_wanted and redialled is None:
            redialled = redial(call)
    if redialled is None:
        redialled = redial(call)
    return final_state(call, sid, redialled)


def final_state(call: Call, sid: str, redialled: Call | None) -> dict:
    call.refresh_from_db()
    contact = Contact.objects.get(pk=call.contact_id)
    events = list(call.events.all())
    statuses = [e.sequence_number for e in events if e.kind == CallEvent.Kind.STATUS]
    if redialled is not None:
        redialled.refresh_from_db()
    return {
        "call": (
            call.status,
            call.provider_sid == sid,
            call.answered_at,
            call.ended_at,
            call.duration_seconds,
            call.answered_by,
            call.error_code,
            call.error_message,
        ),
        # pending (asked for after the end) or not charged; known once Twilio told it
        "price": (call.price, call.price_unit, call.price_status, call.price_check_at),
        # each status callback kept once, however often it came
        "status events": sorted(number for number in statuses if number is not None),
        "reconciliations": statuses.count(None),
        "verdicts": {
            e.payload["AnsweredBy"] for e in events if e.kind == CallEvent.Kind.MACHINE_DETECTION
        },
        # moved on once; late callbacks of the first call leave the next attempt alone
        "contact": (
            contact.state,
            contact.state_reason,
            contact.attempts,
            contact.next_attempt_at is not None,
        ),
        "next call": None
        if redialled is None
        else (redialled.status, redialled.attempt, redialled.ended_at, redialled.events.count()),
    }


def in_order(scenario: str) -> list[Delivery]:
    """What Twilio and the dialer do when nothing goes wrong."""
    callbacks = [Delivery("callback", index) for index in range(len(SCENARIOS[scenario]))]
    return [Delivery("sid"), *callbacks, Delivery("redial")]


@st.composite
def disordered(draw: Callable, scenario: str) -> list[Delivery]:
    """Each callback one to three times, shuffled; the SID and the redial anywhere."""
    copies = [
        Delivery("callback", index)
        for index in range(len(SCENARIOS[scenario]))
        for _copy in range(draw(st.integers(min_value=1, max_value=3)))
    ]
    deliveries = list(draw(st.permutations(copies)))
    deliveries.insert(draw(st.integers(0, len(deliveries))), Delivery("sid"))
    deliveries.insert(draw(st.integers(0, len(deliveries))), Delivery("redial"))
    return deliveries


@pytest.fixture
def running(campaign) -> Campaign:
    campaign.state = Campaign.State.RUNNING
    campaign.caller_number = CALLER
    campaign.compliance_profile = "none"
    campaign.max_attempts = 3
    campaign.save()
    return campaign


@pytest.fixture
def expected() -> dict[str, dict]:
    """The final state of each scenario played in order, computed once per test."""
    return {}


# Hypothesis runs a few hundred orders of callbacks: minutes, so `make test-fast` skips it.
@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: the suite must not flake
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_callbacks_in_any_order_end_a_call_as_in_order(
    client, running, expected, scenario, data
) -> None:
    # given: what the callbacks make of a call when they arrive in order
    if scenario not in expected:
        expected[scenario] = play(client, running, scenario, in_order(scenario))
    deliveries = data.draw(disordered(scenario), label="deliveries")

    # when: they arrive duplicated, shuffled, before the SID and after the next attempt
    state = play(client, running, scenario, deliveries)

    # then
    assert state == expected[scenario]


def test_the_ordered_runs_end_as_each_scenario_means(client, running) -> None:
    # The property above compares with the ordered run: that run must itself be right.
    states, prices = {}, {}
    for scenario in SCENARIOS:
        state = play(client, running, scenario, in_order(scenario))
        states[scenario] = (state["call"][0], state["contact"][0], state["next call"])
        price, unit, price_status, check_at = state["price"]
        first_check = (
            None if check_at is None else email.utils.format_datetime(check_at - PRICE_FIRST_CHECK)
        )
        prices[scenario] = (price, unit, price_status, first_check)

    redialled = (CallStatus.QUEUED, 2, None, 0)
    assert prices == {
        "answered": (None, "", PriceStatus.PENDING, at(51)),
        "voicemail": (None, "", PriceStatus.PENDING, at(30)),
        "no-answer": (None, "", PriceStatus.NOT_CHARGED, None),
        "busy": (None, "", PriceStatus.NOT_CHARGED, None),
        "invalid": (None, "", PriceStatus.NOT_CHARGED, None),
        "canceled": (None, "", PriceStatus.NOT_CHARGED, None),
    }
    assert states == {
        "answered": ("completed", "done", None),
        "voicemail": ("completed", "calling", redialled),
        "no-answer": ("no-answer", "calling", redialled),
        "busy": ("busy", "calling", redialled),
        "invalid": ("failed", "failed", None),
        "canceled": ("canceled", "calling", redialled),
    }


# --- Callbacks delayed past reconciliation --------------------------------------------------

# The Call resource Twilio shows once each call is over, which reconciliation reads.
TWILIO_ENDS: dict[str, dict] = {
    "answered": {"status": "completed", "duration": "42", "answered_by": "human", "end": 51},
    "voicemail": {
        "status": "completed",
        "duration": "23",
        "answered_by": "machine_end_beep",
        "end": 30,
    },
    "no-answer": {"status": "no-answer", "duration": "0", "end": 32},
    "busy": {"status": "busy", "duration": "0", "end": 3},
    "canceled": {"status": "canceled", "duration": "0", "end": 12},
    # Left out: a failed call. The Call resource carries no error code, so a call that
    # reconciliation ends before its callback says why is retried like any failure.
}


@st.composite
def delayed_past_reconciliation(draw: Callable, scenario: str) -> list[Delivery]:
    """Every callback late (each one to three times, shuffled) behind a reconciliation
    that ends the call from Twilio's own record; the SID before or after it."""
    deliveries = draw(disordered(scenario))
    deliveries.insert(0, Delivery("reconcile"))
    sid = next(index for index, delivery in enumerate(deliveries) if delivery.kind == "sid")
    deliveries.insert(draw(st.integers(0, 1)), deliveries.pop(sid))
    return deliveries


# Hypothesis runs a few hundred orders of callbacks: minutes, so `make test-fast` skips it.
@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=st.sampled_from(sorted(TWILIO_ENDS)), data=st.data())
def test_callbacks_delayed_past_reconciliation_end_a_call_as_in_order(
    client, running, expected, fake_twilio, scenario, data
) -> None:
    # given: a call whose callbacks are all held up until reconciliation has asked Twilio
    if scenario not in expected:
        expected[scenario] = play(client, running, scenario, in_order(scenario))
    deliveries = data.draw(delayed_past_reconciliation(scenario), label="deliveries")
    end = TWILIO_ENDS[scenario]

    def twilio_ends(call: Call, sid: str) -> None:
        fake_twilio.set_call(
            sid,
            to=call.to_number,
            **{"from": CALLER},
            status=end["status"],
            duration=end["duration"],
            answered_by=end.get("answered_by"),
            start_time=at(0),
            end_time=at(end["end"]),
        )

    # when
    state = play(client, running, scenario, deliveries, before=twilio_ends)

    # then: the same call and contact; reconciliation's own reading is kept besides, and
    # the price Twilio's Call resource already showed (it priced the call long ago)
    price = expected[scenario]["price"]
    if end["status"] == "completed":
        price = (Decimal("0.013"), "USD", PriceStatus.KNOWN, None)
    assert state == {**expected[scenario], "reconciliations": 1, "price": price}


# --- The price, from Twilio's Call resource -------------------------------------------------


def test_the_price_of_a_call_arrives_through_the_fetch_not_a_callback(
    client, running, fake_twilio
) -> None:
    # given: an answered call whose callbacks all came, and Twilio's record of it
    sids: list[str] = []

    def twilio_has(call: Call, sid: str) -> None:
        sids.append(sid)
        fake_twilio.set_call(sid, status="completed", duration="42", end_time=at(51))

    state = play(client, running, "answered", in_order("answered"), before=twilio_has)
    price, unit, price_status, check_at = state["price"]
    assert (price, unit, price_status) == (None, "", PriceStatus.PENDING)

    # when the price tick runs
    result = dialing.check_prices(now=check_at)

    # then: Twilio's price, kept as the cost
    call = Call.objects.get(provider_sid=sids[0])
    assert result.known == [call.pk]
    assert (call.price, call.price_unit, call.price_status) == (
        Decimal("0.013"),
        "USD",
        PriceStatus.KNOWN,
    )


# --- The fault suite's carrier ---------------------------------------------------------------


def test_the_carrier_signs_some_calls_with_the_fragment_and_some_without(
    client, running, monkeypatch
) -> None:
    # given: the fault suite's carrier, its requests served by the webhook views
    def post(url: str, *, data: dict, headers: dict, timeout: float):
        assert "#" not in url  # a fragment never leaves the sender
        signature = headers["X-Twilio-Signature"]
        path = url.removeprefix(django_settings.APP_URL)
        return client.post(path, data, headers={"x-twilio-signature": signature})

    monkeypatch.setattr(requests, "post", post)
    twilio = ScriptedTwilio(
        account_sid=django_settings.TWILIO_ACCOUNT_SID,
        auth_token=django_settings.TWILIO_AUTH_TOKEN,
    )
    player = Carrier(twilio, outcome=lambda number: BUSY)

    # when: busy calls are played until both ways were seen (half the SIDs each way)
    played: list[Call] = []
    while len(played) < 64 and not (
        player.signed_with_fragment and len(player.signed_with_fragment) < len(played)
    ):
        call = dialing_call(running)
        sid = "CA" + uuid.uuid4().hex
        dialing._save_sid(call, sid)
        twilio.forms[sid] = {
            "To": [call.to_number],
            "From": [CALLER],
            "StatusCallback": [links.callback_url("status", call.pk)],
        }
        player._play(sid)
        played.append(call)

    # then: both ways in the run, each accepted and folded in
    assert 0 < len(player.signed_with_fragment) < len(played)
    assert player.failed_callbacks == player.lost_callbacks == player.problems == []
    assert {Call.objects.get(pk=call.pk).status for call in played} == {CallStatus.BUSY}
    assert player.signed_with_fragment == {
        call.provider_sid
        for call in Call.objects.filter(pk__in=[c.pk for c in played])
        if signs_fragment(call.provider_sid)
    }


# --- Answering machines ---------------------------------------------------------------------


def test_a_repeated_machine_verdict_turns_the_call_to_voicemail_once(
    client, running, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given: a live call a machine answered; Twilio delivers the AMD verdict twice (the
    # first answer was lost on the way back)
    from calls import tasks

    redirects: list[int] = []
    monkeypatch.setattr(tasks.handle_machine_task, "delay", redirects.append)
    call = dialing_call(running)
    sid = "CA" + uuid.uuid4().hex
    dialing._save_sid(call, sid)
    verdict = {"CallSid": sid, "AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "4100"}

    # when
    with django_capture_on_commit_callbacks(execute=True):
        codes = [
            post_signed(client, webhook_path("amd", call.pk), verdict).status_code
            for _delivery in range(2)
        ]

    # then: one redirect to the message; a second would restart it on the recording
    assert codes == [204, 204]
    assert redirects == [call.pk]
    call.refresh_from_db()
    assert call.answered_by == "machine_end_beep"


def test_a_machine_verdict_that_could_not_be_acted_on_is_acted_on_when_retried(
    client, running, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given: the broker is down when the verdict comes, up again for Twilio's retry
    from calls import tasks

    redirects: list[int] = []

    def delay(call_id: int) -> None:
        if not redirects and not broker_up:
            raise kombu.exceptions.OperationalError("Error 111 connecting to the broker")
        redirects.append(call_id)

    broker_up = False
    monkeypatch.setattr(tasks.handle_machine_task, "delay", delay)
    call = dialing_call(running)
    sid = "CA" + uuid.uuid4().hex
    dialing._save_sid(call, sid)
    verdict = {"CallSid": sid, "AnsweredBy": "machine_start"}
    path = webhook_path("amd", call.pk)

    # when: the first delivery fails to queue the redirect (Twilio gets an error)...
    with (
        pytest.raises(kombu.exceptions.OperationalError),
        django_capture_on_commit_callbacks(execute=True),
    ):
        post_signed(client, path, verdict)
    broker_up = True
    # ...and Twilio delivers it again
    with django_capture_on_commit_callbacks(execute=True):
        retried = post_signed(client, path, verdict)

    # then the retry is acted on, once
    assert retried.status_code == 204
    assert redirects == [call.pk]
    assert call.events.filter(kind=CallEvent.Kind.MACHINE_DETECTION).count() == 1


def test_a_final_callback_retried_queues_the_conclusion_again(
    client, running, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given: a call whose final callback was applied, but whose answer failed (the
    # conclusion could not be queued: the broker was down)
    from calls import tasks

    concluded: list[int] = []
    monkeypatch.setattr(tasks.conclude_call_task, "delay", concluded.append)
    call = dialing_call(running)
    sid = "CA" + uuid.uuid4().hex
    dialing._save_sid(call, sid)
    final = {**SCENARIOS["no-answer"][-1][1], "CallSid": sid}
    post_signed(client, webhook_path("status", call.pk), final)

    # when Twilio delivers it again, and once more
    with django_capture_on_commit_callbacks(execute=True):
        for _delivery in range(2):
            assert post_signed(client, webhook_path("status", call.pk), final).status_code == 204

    # then the conclusion is queued again (concluding twice sends nothing new), and the
    # call and contact are as the first delivery left them
    assert concluded == [call.pk, call.pk]
    call.refresh_from_db()
    assert call.status == CallStatus.NO_ANSWER
    assert call.events.count() == 1
