from __future__ import annotations

import datetime
import random
import threading
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from calls.callbacks import PRICE_FIRST_CHECK, record_call_status, record_price
from calls.models import Call, CallEvent
from calls.services import CallOutcome, finish_call, speech_for_call
from campaigns.models import RETRY_OUTCOMES, Contact, default_retry_policy
from tests.factories import CallFactory, CallTemplateFactory, ContactFactory, VoiceFactory
from tests.fakes.elevenlabs import ANTONI_ID, BELLA_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(campaign) -> Call:
    campaign.template = CallTemplateFactory(
        partner=campaign.partner, name="T", greeting="Hola", language="es-ES"
    )
    campaign.save(update_fields=["template"])
    contact = ContactFactory(campaign=campaign, phone="+34600000001")
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status="in-progress",
        from_number="+34910000000",
        to_number=contact.phone,
    )


def test_speech_for_call_uses_the_campaign_voice(fake_elevenlabs, call) -> None:
    antoni = VoiceFactory(provider_voice_id=ANTONI_ID, name="Antoni")
    VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    call.campaign.voice = antoni
    call.campaign.save(update_fields=["voice"])

    speech = speech_for_call(call=call, text="Hola, Ana.")

    assert not speech.is_fallback
    assert fake_elevenlabs.requests_to(f"/v1/text-to-speech/{ANTONI_ID}")
    call.refresh_from_db()
    assert call.speech_fallbacks == 0


def test_speech_for_call_uses_the_default_voice_when_campaign_has_none(
    fake_elevenlabs, call
) -> None:
    VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")

    speech_for_call(call=call, text="Hola.")

    assert fake_elevenlabs.requests_to(f"/v1/text-to-speech/{BELLA_ID}")


def test_speech_for_call_keeps_its_first_voice_to_the_end(fake_elevenlabs, call) -> None:
    bella = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    antoni = VoiceFactory(provider_voice_id=ANTONI_ID, name="Antoni")
    speech_for_call(call=call, text="Hola.")
    # Staff choose another voice while the call is in progress; a webhook reloads it.
    call.campaign.voice = antoni
    call.campaign.save(update_fields=["voice"])
    reloaded = Call.objects.select_related("campaign__template").get(pk=call.pk)

    speech_for_call(call=reloaded, text="¿Le viene bien el martes?")

    assert reloaded.voice == bella
    assert len(fake_elevenlabs.requests_to(f"/v1/text-to-speech/{BELLA_ID}")) == 2
    assert not fake_elevenlabs.requests_to(f"/v1/text-to-speech/{ANTONI_ID}")
    # The next call of the campaign speaks with the new voice.
    call.status = "completed"
    call.save(update_fields=["status"])
    next_call = CallFactory(
        campaign=call.campaign,
        contact=call.contact,
        attempt=2,
        status="in-progress",
        from_number=call.from_number,
        to_number=call.to_number,
    )
    speech_for_call(call=next_call, text="Hola.")
    assert next_call.voice == antoni


def test_speech_for_call_counts_fallbacks_on_the_call(fake_elevenlabs, call) -> None:
    VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    fake_elevenlabs.fail_next(503, times=20)

    first = speech_for_call(call=call, text="Hola.")
    second = speech_for_call(call=call, text="Adiós.")

    assert first.is_fallback and second.is_fallback
    assert first.language == "es-ES"
    call.refresh_from_db()
    assert call.speech_fallbacks == 2


# --- Status callbacks -------------------------------------------------------------------------

SID = "CA" + "0" * 32
DIALED_AT = datetime.datetime(2026, 3, 2, 10, 0, 0, tzinfo=datetime.UTC)


def rfc2822(moment: datetime.datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


def status_events(sid: str = SID, *, answered_by: str = "human") -> list[dict[str, str]]:
    """The four callbacks of an answered call, in the order Twilio sends them."""
    base = {"CallSid": sid, "AccountSid": "AC" + "1" * 32, "CallbackSource": "call-progress-events"}
    return [
        {**base, "CallStatus": "initiated", "SequenceNumber": "0", "Timestamp": rfc2822(DIALED_AT)},
        {
            **base,
            "CallStatus": "ringing",
            "SequenceNumber": "1",
            "Timestamp": rfc2822(DIALED_AT + datetime.timedelta(seconds=2)),
        },
        {
            **base,
            "CallStatus": "in-progress",
            "SequenceNumber": "2",
            "Timestamp": rfc2822(DIALED_AT + datetime.timedelta(seconds=9)),
        },
        {
            **base,
            "CallStatus": "completed",
            "SequenceNumber": "3",
            "Timestamp": rfc2822(DIALED_AT + datetime.timedelta(seconds=51)),
            "CallDuration": "42",
            "AnsweredBy": answered_by,
            "SipResponseCode": "200",
        },
    ]


def final_event(status: str, *, sid: str = SID, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "CallStatus": status,
        "SequenceNumber": "3",
        "Timestamp": rfc2822(DIALED_AT + datetime.timedelta(seconds=30)),
        **extra,
    }


def dialed_call(campaign, phone: str = "+34600000002", *, attempt: int = 1, **fields) -> Call:
    """A call the dispatcher created and a worker dialled: its contact is calling."""
    contact, _ = Contact.objects.get_or_create(
        campaign=campaign, phone=phone, defaults={"state": Contact.State.CALLING}
    )
    fields.setdefault("provider_sid", SID)
    fields.setdefault("status", Call.Status.DIALING)
    return CallFactory(contact=contact, attempt=attempt, dialed_at=DIALED_AT, **fields)


def folded_state(call: Call) -> dict:
    """What the callbacks made of a call and its contact (ids and clocks aside)."""
    call.refresh_from_db()
    call.contact.refresh_from_db()
    return {
        "status": call.status,
        "provider_sid": call.provider_sid,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "duration_seconds": call.duration_seconds,
        "answered_by": call.answered_by,
        "price": call.price,
        "price_unit": call.price_unit,
        "price_status": call.price_status,
        "price_check_at": call.price_check_at,
        "error_code": call.error_code,
        "error_message": call.error_message,
        "contact_state": call.contact.state,
        "contact_reason": call.contact.state_reason,
        "events": sorted(call.events.values_list("sequence_number", flat=True)),
    }


def test_record_call_status_folds_ordered_events_into_the_call(campaign) -> None:
    # given
    call = dialed_call(campaign)

    # when
    for params in status_events():
        record_call_status(call_id=call.pk, params=params)

    # then
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED
    assert call.answered_at == DIALED_AT + datetime.timedelta(seconds=9)
    assert call.ended_at == DIALED_AT + datetime.timedelta(seconds=51)
    assert call.duration_seconds == 42
    assert call.answered_by == "human"
    # No price yet: Twilio's Call resource is asked for it a few seconds after the end.
    assert (call.price, call.price_unit) == (None, "")
    assert call.price_status == Call.PriceStatus.PENDING
    assert call.price_check_at == call.ended_at + PRICE_FIRST_CHECK
    assert call.error_code is None and call.error_message == ""
    assert call.events.count() == 4
    assert CallEvent.objects.get(call=call, sequence_number=3).payload["CallDuration"] == "42"


def test_record_call_status_moves_through_each_live_status(campaign) -> None:
    call = dialed_call(campaign)
    seen = []

    for params in status_events():
        seen.append(record_call_status(call_id=call.pk, params=params).status)

    assert seen == ["queued", "ringing", "in-progress", "completed"]


def test_record_call_status_any_order_with_duplicates_ends_in_the_same_state(campaign) -> None:
    # given: the state reached by the callbacks in order
    ordered = dialed_call(campaign, "+34600000100", provider_sid=None)
    for params in status_events(sid="CA-ordered"):
        record_call_status(call_id=ordered.pk, params=params)
    expected = folded_state(ordered)
    del expected["provider_sid"]
    rng = random.Random(20260302)

    for run in range(40):
        sid = f"CA-run-{run}"
        call = dialed_call(campaign, f"+346001{run:05d}", provider_sid=None)
        # when: Twilio retries some callbacks and delivers them all in any order
        events = status_events(sid=sid)
        deliveries = events + rng.sample(events, k=rng.randint(0, 4))
        rng.shuffle(deliveries)
        for params in deliveries:
            record_call_status(call_id=call.pk, params=params)

        # then
        state = folded_state(call)
        assert state.pop("provider_sid") == sid
        assert state == expected, deliveries


def test_record_call_status_late_ringing_after_completed_changes_nothing(campaign) -> None:
    # given
    call = dialed_call(campaign)
    initiated, ringing, answered, completed = status_events()
    for params in (initiated, answered, completed):
        record_call_status(call_id=call.pk, params=params)
    before = folded_state(call)

    # when
    record_call_status(call_id=call.pk, params=ringing)

    # then
    after = folded_state(call)
    assert after.pop("events") == [0, 1, 2, 3]
    before.pop("events")
    assert after == before
    assert after["status"] == Call.Status.COMPLETED


def test_record_call_status_never_replaces_a_final_status(campaign) -> None:
    call = dialed_call(campaign)
    record_call_status(call_id=call.pk, params=final_event("busy"))

    record_call_status(
        call_id=call.pk, params=final_event("completed", SequenceNumber="4", CallDuration="3")
    )

    call.refresh_from_db()
    assert call.status == Call.Status.BUSY


def test_record_call_status_stores_a_retried_callback_once(campaign) -> None:
    call = dialed_call(campaign)
    ringing = status_events()[1]

    record_call_status(call_id=call.pk, params=ringing)
    record_call_status(call_id=call.pk, params=ringing)

    assert CallEvent.objects.filter(provider_sid=SID).count() == 1
    call.refresh_from_db()
    assert call.status == Call.Status.RINGING


def test_record_call_status_records_the_sid_when_the_callback_overtakes_the_api(
    campaign,
) -> None:
    call = dialed_call(campaign, provider_sid=None)

    record_call_status(call_id=call.pk, params=status_events()[0])

    call.refresh_from_db()
    assert call.provider_sid == SID
    assert call.status == Call.Status.QUEUED


def test_record_call_status_keeps_a_callback_for_an_unknown_call_unmatched(campaign) -> None:
    result = record_call_status(call_id=999_999, params=status_events()[1])

    assert result is None
    event = CallEvent.objects.get()
    assert event.call is None
    assert event.provider_sid == SID
    assert event.kind == CallEvent.Kind.STATUS


def test_record_call_status_keeps_another_calls_sid_unmatched(campaign) -> None:
    call = dialed_call(campaign)

    result = record_call_status(
        call_id=call.pk, params=final_event("completed", sid="CA" + "9" * 32)
    )

    assert result is None
    assert CallEvent.objects.get().call is None
    call.refresh_from_db()
    assert call.status == Call.Status.DIALING
    assert call.contact.state == Contact.State.CALLING


def test_record_call_status_does_not_take_a_sid_another_call_holds(campaign) -> None:
    dialed_call(campaign, "+34600000003")  # holds SID
    call = dialed_call(campaign, provider_sid=None)

    assert record_call_status(call_id=call.pk, params=status_events()[1]) is None

    call.refresh_from_db()
    assert call.provider_sid is None
    assert call.status == Call.Status.DIALING


def test_record_call_status_records_errors(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(
        call_id=call.pk,
        params=final_event(
            "failed", ErrorCode="31005", ErrorMessage="Connection error", SipResponseCode="502"
        ),
    )

    call.refresh_from_db()
    assert (call.error_code, call.error_message) == (31005, "Connection error")


def test_record_call_status_falls_back_to_the_sip_code_for_context(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(call_id=call.pk, params=final_event("busy", SipResponseCode="486"))

    call.refresh_from_db()
    assert call.error_code is None
    assert "486" in call.error_message


def test_record_call_status_times_the_call_now_without_a_timestamp(campaign) -> None:
    call = dialed_call(campaign)
    before = timezone.now()

    record_call_status(call_id=call.pk, params={"CallSid": SID, "CallStatus": "in-progress"})

    call.refresh_from_db()
    assert before <= call.answered_at <= timezone.now()


def test_record_call_status_never_ends_a_call_before_it_was_dialled(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(
        call_id=call.pk,
        params={
            "CallSid": SID,
            "CallStatus": "no-answer",
            "Timestamp": rfc2822(DIALED_AT - datetime.timedelta(seconds=2)),
        },
    )

    call.refresh_from_db()
    assert call.ended_at == DIALED_AT


def test_record_call_status_ignores_an_unknown_status(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(call_id=call.pk, params={"CallSid": SID, "CallStatus": "teleported"})

    call.refresh_from_db()
    assert call.status == Call.Status.DIALING
    assert CallEvent.objects.filter(call=call).count() == 1


@pytest.mark.django_db(transaction=True)
def test_record_call_status_concurrent_callbacks_apply_once(campaign) -> None:
    # given: every callback of a call, each delivered twice, by eight threads at once
    call = dialed_call(campaign)
    deliveries = status_events() * 2
    random.Random(7).shuffle(deliveries)
    barrier = threading.Barrier(len(deliveries))
    errors: list[BaseException] = []

    def deliver(params: dict[str, str]) -> None:
        try:
            barrier.wait()
            record_call_status(call_id=call.pk, params=params)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(params,)) for params in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then: the call is completed once, with one row per event, and the contact is done
    assert errors == []
    state = folded_state(call)
    assert state["status"] == Call.Status.COMPLETED
    assert state["events"] == [0, 1, 2, 3]
    assert state["answered_at"] == DIALED_AT + datetime.timedelta(seconds=9)
    assert state["contact_state"] == Contact.State.DONE


# --- The price of a call ---------------------------------------------------------------------


def test_record_call_status_takes_no_price_from_a_callback(campaign) -> None:
    # given: a final callback with the price fields Twilio never sends in one
    call = dialed_call(campaign)
    completed = {
        **status_events()[3],
        "Price": "-0.01300",
        "PriceUnit": "USD",
        "CallPrice": "-0.01300",
    }

    # when
    record_call_status(call_id=call.pk, params=completed)

    # then
    call.refresh_from_db()
    assert (call.price, call.price_unit) == (None, "")
    assert call.price_status == Call.PriceStatus.PENDING


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_record_call_status_a_call_twilio_does_not_charge_is_not_charged(campaign, status) -> None:
    call = dialed_call(campaign)

    record_call_status(call_id=call.pk, params=final_event(status))

    call.refresh_from_db()
    assert (call.price_status, call.price_check_at) == (Call.PriceStatus.NOT_CHARGED, None)


def test_record_call_status_a_completed_call_waits_for_its_price_after_its_end(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(call_id=call.pk, params=final_event("completed", CallDuration="20"))

    call.refresh_from_db()
    assert call.ended_at == DIALED_AT + datetime.timedelta(seconds=30)
    assert (call.price_status, call.price_check_at) == (
        Call.PriceStatus.PENDING,
        call.ended_at + PRICE_FIRST_CHECK,
    )
    assert call.price_checks == 0


def test_record_call_status_live_statuses_leave_the_price_alone(campaign) -> None:
    call = dialed_call(campaign)

    for params in status_events()[:3]:
        record_call_status(call_id=call.pk, params=params)

    call.refresh_from_db()
    assert (call.price_status, call.price_check_at) == (Call.PriceStatus.PENDING, None)


def test_record_price_keeps_twilios_price_as_the_cost(campaign) -> None:
    call = dialed_call(campaign)
    record_call_status(call_id=call.pk, params=final_event("completed"))

    assert record_price(call_id=call.pk, price="-0.01300", price_unit="usd")

    call.refresh_from_db()
    assert (call.price, call.price_unit, call.price_status, call.price_check_at) == (
        Decimal("0.013"),
        "USD",
        Call.PriceStatus.KNOWN,
        None,
    )


@pytest.mark.parametrize("price", [None, "", "not a price", "NaN", "-1e9"])
def test_record_price_refuses_what_is_not_a_price(campaign, price) -> None:
    call = dialed_call(campaign)
    record_call_status(call_id=call.pk, params=final_event("completed"))

    assert not record_price(call_id=call.pk, price=price, price_unit="USD")

    call.refresh_from_db()
    assert (call.price, call.price_status) == (None, Call.PriceStatus.PENDING)


def test_record_price_leaves_a_call_not_charged_alone(campaign) -> None:
    call = dialed_call(campaign)
    record_call_status(call_id=call.pk, params=final_event("busy"))

    assert not record_price(call_id=call.pk, price="-0.01300", price_unit="USD")

    call.refresh_from_db()
    assert (call.price, call.price_status) == (None, Call.PriceStatus.NOT_CHARGED)


# --- After the call ---------------------------------------------------------------------------


def test_call_outcomes_keep_the_strings_retry_policies_and_metrics_use() -> None:
    assert {outcome.value for outcome in CallOutcome} == {
        "answered",
        "voicemail",
        "no-answer",
        "busy",
        "failed",
        "rejected",
        "canceled",
        "transfer-failed",
    }
    assert set(RETRY_OUTCOMES) <= set(CallOutcome)


def test_finish_call_human_answer_means_done(campaign) -> None:
    call = dialed_call(campaign)

    for params in status_events(answered_by="human"):
        record_call_status(call_id=call.pk, params=params)

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.DONE
    assert contact.state_reason
    assert contact.next_attempt_at is None


def test_finish_call_unknown_answer_means_done(campaign) -> None:
    call = dialed_call(campaign)

    record_call_status(call_id=call.pk, params=final_event("completed", AnsweredBy="unknown"))

    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.DONE


RETRY_POLICY = {
    "busy": {"delay_minutes": 10, "max_attempts": 3},
    "no-answer": {"delay_minutes": 30, "max_attempts": 2},
    "failed": {"delay_minutes": 5, "max_attempts": 2},
    "voicemail": {"delay_minutes": 120, "max_attempts": 2},
}


@pytest.fixture
def retrying_campaign(campaign):
    campaign.retry_policy = RETRY_POLICY
    campaign.max_attempts = 4
    campaign.save(update_fields=["retry_policy", "max_attempts"])
    return campaign


@pytest.mark.parametrize(
    ("status", "extra", "delay"),
    [
        ("busy", {}, 10),
        ("no-answer", {}, 30),
        ("failed", {"ErrorCode": "31005"}, 5),
        ("completed", {"AnsweredBy": "machine_end_beep", "CallDuration": "20"}, 120),
        ("completed", {"AnsweredBy": "fax"}, 120),
    ],
)
def test_finish_call_retries_after_the_campaign_delay(
    retrying_campaign, status, extra, delay
) -> None:
    # given
    call = dialed_call(retrying_campaign)
    before = timezone.now()

    # when
    record_call_status(call_id=call.pk, params=final_event(status, **extra))

    # then
    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.RETRY
    assert contact.state_reason
    wait = datetime.timedelta(minutes=delay)
    assert before + wait <= contact.next_attempt_at <= timezone.now() + wait


def test_finish_call_busy_retry_time_is_now_plus_delay(retrying_campaign, monkeypatch) -> None:
    now = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(timezone, "now", lambda: now)
    call = dialed_call(retrying_campaign)

    record_call_status(call_id=call.pk, params=final_event("busy"))

    contact = Contact.objects.get(pk=call.contact_id)
    assert (contact.state, contact.next_attempt_at) == (
        Contact.State.RETRY,
        now + datetime.timedelta(minutes=10),
    )


def test_finish_call_no_answer_exhausts_its_attempts(retrying_campaign) -> None:
    # given: a first call nobody answered
    first = dialed_call(retrying_campaign, provider_sid="CA-first")
    record_call_status(call_id=first.pk, params=final_event("no-answer", sid="CA-first"))
    Contact.objects.filter(pk=first.contact_id).update(state=Contact.State.CALLING, attempts=2)
    second = dialed_call(retrying_campaign, attempt=2)

    # when: nobody answers the second either (the policy allows two)
    record_call_status(call_id=second.pk, params=final_event("no-answer"))

    # then
    contact = Contact.objects.get(pk=second.contact_id)
    assert contact.state == Contact.State.EXHAUSTED
    assert contact.next_attempt_at is None
    assert contact.state_reason


def test_finish_call_exhausts_at_the_campaign_max_attempts(retrying_campaign) -> None:
    call = dialed_call(retrying_campaign, attempt=4)
    Contact.objects.filter(pk=call.contact_id).update(attempts=4)

    record_call_status(call_id=call.pk, params=final_event("busy"))

    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.EXHAUSTED


def test_finish_call_counts_only_calls_with_the_same_outcome(retrying_campaign) -> None:
    first = dialed_call(retrying_campaign, provider_sid="CA-first")
    record_call_status(call_id=first.pk, params=final_event("busy", sid="CA-first"))
    Contact.objects.filter(pk=first.contact_id).update(state=Contact.State.CALLING, attempts=2)
    second = dialed_call(retrying_campaign, attempt=2)

    record_call_status(call_id=second.pk, params=final_event("no-answer"))

    assert Contact.objects.get(pk=second.contact_id).state == Contact.State.RETRY


def test_finish_call_fails_the_contact_on_a_permanent_provider_error(retrying_campaign) -> None:
    call = dialed_call(retrying_campaign)

    record_call_status(
        call_id=call.pk,
        params=final_event("failed", ErrorCode="13224", ErrorMessage="Invalid phone number"),
    )

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.FAILED
    assert "13224" in contact.state_reason
    assert contact.next_attempt_at is None


def test_finish_call_a_late_final_callback_leaves_the_next_call_alone(retrying_campaign) -> None:
    # given: the call ended busy, and the dispatcher has placed the next call
    call = dialed_call(retrying_campaign)
    record_call_status(call_id=call.pk, params=final_event("busy"))
    Contact.objects.filter(pk=call.contact_id).update(state=Contact.State.CALLING)

    # when: a late, differently numbered copy of the final callback
    record_call_status(call_id=call.pk, params=final_event("busy", SequenceNumber="7"))

    # then: the contact stays with its new call
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.CALLING


def test_finish_call_acts_only_on_a_calling_contact(retrying_campaign) -> None:
    call = dialed_call(retrying_campaign, status=Call.Status.BUSY)

    first = finish_call(call=call)
    second = finish_call(call=Call.objects.get(pk=call.pk))

    assert (first, second) == (Contact.State.RETRY, None)


def test_finish_call_leaves_a_contact_that_is_not_calling(retrying_campaign) -> None:
    call = dialed_call(retrying_campaign)
    Contact.objects.filter(pk=call.contact_id).update(
        state=Contact.State.OPTED_OUT, state_reason="Asked not to be called."
    )

    record_call_status(call_id=call.pk, params=final_event("busy"))

    contact = Contact.objects.get(pk=call.contact_id)
    assert (contact.state, contact.state_reason) == (
        Contact.State.OPTED_OUT,
        "Asked not to be called.",
    )


def test_finish_call_canceled_call_retries_like_an_unanswered_one(retrying_campaign) -> None:
    call = dialed_call(retrying_campaign)

    record_call_status(call_id=call.pk, params=final_event("canceled"))

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at - timezone.now() > datetime.timedelta(minutes=29)


def test_finish_call_takes_the_default_for_a_policy_saved_unchecked(campaign) -> None:
    type(campaign).objects.filter(pk=campaign.pk).update(retry_policy={"busy": "soon"})
    call = dialed_call(campaign)
    before = timezone.now()

    record_call_status(call_id=call.pk, params=final_event("busy"))

    contact = Contact.objects.get(pk=call.contact_id)
    delay = datetime.timedelta(minutes=default_retry_policy()["busy"]["delay_minutes"])
    assert contact.state == Contact.State.RETRY
    assert before + delay <= contact.next_attempt_at <= timezone.now() + delay
