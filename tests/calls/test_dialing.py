"""Placing calls and reconciling them: the real twilio SDK against the fake Twilio."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from decimal import Decimal
from email.utils import format_datetime
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone, translation

from calls import dialing, pacing, tasks, telephony
from calls.callbacks import PRICE_FIRST_CHECK, record_call_status
from calls.dialing import Dialed, check_prices, place_call, reconcile_calls
from calls.dispatcher import dispatch
from calls.models import Call, CallStatus, PriceStatus
from campaigns.models import Campaign, Contact, DoNotCallSource
from campaigns.services import add_do_not_call, pause_campaign
from tests.factories import CampaignFactory, DoNotCallFactory

APP_URL = "https://calls.example.com"


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    with translation.override("en"):  # the reasons asserted below are the English ones
        yield


@pytest.fixture(autouse=True)
def dial_settings(settings, tmp_path) -> None:
    settings.APP_URL = APP_URL
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path  # fresh pacing buckets on the embedded default
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)


@pytest.fixture
def running(campaign) -> Campaign:
    campaign.state = Campaign.State.RUNNING
    campaign.compliance_profile = "none"  # these tests dial whatever the hour
    campaign.caller_number = "+34910000000"
    campaign.max_concurrent_calls = 50
    campaign.calls_per_second = 50
    campaign.save()
    return campaign


def add_contact(campaign: Campaign, phone: str = "+34600000001", **fields) -> Contact:
    return Contact.objects.create(
        campaign=campaign,
        phone=phone,
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        **fields,
    )


def dispatched(campaign: Campaign, count: int = 1) -> list[Call]:
    """``count`` new contacts of ``campaign`` dispatched into pending calls."""
    for index in range(count):
        add_contact(campaign, phone=f"+346000000{index + 10:02d}")
    result = dispatch()
    assert len(result.created) == count
    return list(Call.objects.filter(pk__in=result.created).order_by("pk"))


def form(request, name: str) -> list[str]:
    return request.form.get(name, [])


# --- Placing ----------------------------------------------------------------------------


def test_place_call_asks_twilio_with_every_callback_and_keeps_the_sid(running, fake_twilio) -> None:
    running.record_calls = True
    running.ring_timeout_seconds = 20
    running.time_limit_seconds = 300
    running.save()
    [call] = dispatched(running)

    assert place_call(call_id=call.pk) == Dialed.PLACED

    [request] = fake_twilio.requests_to("POST", "/Calls.json")
    base = f"{APP_URL}/twilio/calls/{call.pk}"
    assert form(request, "To") == [call.to_number]
    assert form(request, "From") == ["+34910000000"]
    assert form(request, "Url") == [f"{base}/answer"]
    assert form(request, "FallbackUrl") == [f"{base}/fallback"]
    assert form(request, "StatusCallback") == [f"{base}/status#rc=3"]
    assert form(request, "StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert form(request, "MachineDetection") == ["DetectMessageEnd"]
    assert form(request, "AsyncAmd") == ["true"]
    assert form(request, "AsyncAmdStatusCallback") == [f"{base}/amd#rc=3"]
    assert form(request, "Timeout") == ["20"]
    assert form(request, "TimeLimit") == ["300"]
    # A recording campaign's call is not recorded from the answer: only once the callee
    # has heard the announcement (tests/calls/test_recording_start.py).
    assert "Record" not in request.form
    assert "RecordingStatusCallback" not in request.form
    call.refresh_from_db()
    assert call.status == CallStatus.QUEUED
    assert call.provider_sid == fake_twilio.calls[0]["sid"]
    assert call.dialed_at is not None


def test_a_hang_up_campaign_asks_for_quick_detection(running, fake_twilio) -> None:
    running.machine_action = "hangup"
    running.save()
    [call] = dispatched(running)

    place_call(call_id=call.pk)

    [request] = fake_twilio.requests_to("POST", "/Calls.json")
    assert form(request, "MachineDetection") == ["Enable"]
    assert form(request, "Record") == []


def test_a_call_is_dialled_once_however_many_tasks_carry_it(running, fake_twilio) -> None:
    [call] = dispatched(running)

    results = [place_call(call_id=call.pk) for _ in range(3)]

    assert results == [Dialed.PLACED, Dialed.NOT_PENDING, Dialed.NOT_PENDING]
    assert len(fake_twilio.requests_to("POST", "/Calls.json")) == 1


def test_a_number_put_on_do_not_call_after_dispatch_is_not_dialled(running, fake_twilio) -> None:
    [call] = dispatched(running)
    add_do_not_call(phone=call.to_number, partner=running.partner, source=DoNotCallSource.STAFF)

    assert place_call(call_id=call.pk) == Dialed.RELEASED

    assert fake_twilio.requests_to("POST", "/Calls.json") == []
    call.refresh_from_db()
    assert call.status == CallStatus.NOT_PLACED
    assert "do-not-call" in call.error_message
    assert (call.price_status, call.price_check_at) == (PriceStatus.NOT_CHARGED, None)
    contact = call.contact
    contact.refresh_from_db()
    assert contact.state == Contact.State.FAILED
    assert contact.attempts == 0  # never dialled: not an attempt
    assert "do-not-call" in contact.state_reason


def test_a_campaign_paused_after_dispatch_keeps_its_contacts_waiting(running, fake_twilio) -> None:
    calls = dispatched(running, 2)
    pause_campaign(campaign=running)

    assert [place_call(call_id=call.pk) for call in calls] == [Dialed.RELEASED] * 2

    assert fake_twilio.requests_to("POST", "/Calls.json") == []
    for call in calls:
        contact = Contact.objects.get(pk=call.contact_id)
        assert (contact.state, contact.attempts, contact.next_attempt_at) == (
            Contact.State.PENDING,
            0,
            None,
        )


def test_a_contact_outside_its_window_at_dial_time_is_put_off(
    running, fake_twilio, monkeypatch
) -> None:
    running.compliance_profile = "es"
    running.save()
    [call] = dispatched(running) if _inside_spanish_window() else _dispatched_at_noon(running)
    saturday = datetime.datetime(2026, 11, 28, 11, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(dialing, "timezone", SimpleNamespace(now=lambda: saturday))

    assert place_call(call_id=call.pk) == Dialed.RELEASED

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.PENDING
    # Monday 30 November, 09:00 in Madrid.
    assert contact.next_attempt_at == datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
    assert fake_twilio.requests_to("POST", "/Calls.json") == []


def _inside_spanish_window() -> bool:
    now = timezone.localtime()
    return now.weekday() < 5 and 9 <= now.hour < 20


def _dispatched_at_noon(campaign: Campaign) -> list[Call]:
    add_contact(campaign, phone="+34600000099")
    result = dispatch(now=datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC))
    return list(Call.objects.filter(pk__in=result.created))


def test_an_invalid_number_fails_the_call_and_the_contact_with_a_reason(
    running, fake_twilio
) -> None:
    [call] = dispatched(running)
    fake_twilio.fail_next(400, code=21211, message="The 'To' number is not a valid phone number.")

    assert place_call(call_id=call.pk) == Dialed.REJECTED

    call.refresh_from_db()
    assert (call.status, call.error_code) == (CallStatus.FAILED, 21211)
    assert call.error_message == "The number to call is not valid."
    assert (call.price_status, call.price_check_at) == (PriceStatus.NOT_CHARGED, None)
    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.FAILED
    assert "21211" in contact.state_reason


def test_another_refusal_fails_the_call_and_follows_the_retry_policy(running, fake_twilio) -> None:
    [call] = dispatched(running)
    fake_twilio.fail_next(400, code=21214, message="'To' phone number cannot be reached")

    assert place_call(call_id=call.pk) == Dialed.REJECTED

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at > timezone.now()


def test_the_concurrency_limit_backs_the_campaign_off(running, fake_twilio) -> None:
    calls = dispatched(running, 2)
    fake_twilio.fail_next(400, code=10004, message="Call concurrency limit exceeded")

    assert place_call(call_id=calls[0].pk) == Dialed.HELD

    contact = Contact.objects.get(pk=calls[0].contact_id)
    assert contact.state == Contact.State.PENDING
    assert contact.attempts == 0
    assert contact.next_attempt_at > timezone.now() + datetime.timedelta(seconds=10)
    assert pacing.backing_off([running.pk]) == {running.pk}
    add_contact(running, phone="+34600000077")
    assert dispatch().created == []  # held back while backing off
    # The next refusal in a row waits longer; a call that goes through clears it.
    assert pacing.back_off_campaign(running.pk) == pacing.BACKOFF_FIRST * 2
    assert place_call(call_id=calls[1].pk) == Dialed.PLACED
    assert pacing.backing_off([running.pk]) == set()


def test_bad_credentials_pause_every_running_campaign_instead_of_failing_contacts(
    running, fake_twilio, partner, call_template, settings
) -> None:
    other = CampaignFactory(
        partner=partner, name="Other", template=call_template, state=Campaign.State.RUNNING
    )
    [call] = dispatched(running)
    settings.TWILIO_AUTH_TOKEN = "wrong" * 6

    assert place_call(call_id=call.pk) == Dialed.HELD

    for campaign in (running, other):
        campaign.refresh_from_db()
        assert campaign.state == Campaign.State.PAUSED
        assert "TWILIO_AUTH_TOKEN" in campaign.state_reason
    contact = Contact.objects.get(pk=call.contact_id)
    assert (contact.state, contact.attempts) == (Contact.State.PENDING, 0)
    assert Call.objects.get(pk=call.pk).status == CallStatus.NOT_PLACED


def test_an_unknown_caller_number_pauses_only_its_campaign(running, fake_twilio) -> None:
    [call] = dispatched(running)
    fake_twilio.fail_next(400, code=21210, message="'From' phone number not verified")

    assert place_call(call_id=call.pk) == Dialed.HELD

    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED
    assert "caller number" in running.state_reason


def test_twilio_busy_returns_the_call_to_pending_for_the_task_to_retry(
    running, fake_twilio
) -> None:
    [call] = dispatched(running)
    fake_twilio.fail_next(429, times=10)

    assert place_call(call_id=call.pk) == Dialed.RETRY

    call.refresh_from_db()
    assert (call.status, call.dialed_at) == (CallStatus.PENDING, None)
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.CALLING


def test_place_call_task_retries_then_releases_the_call(running, fake_twilio, settings) -> None:
    settings.TWILIO_MAX_RETRIES = 0
    [call] = dispatched(running)
    fake_twilio.fail_next(429, times=tasks.PLACE_CALL_RETRIES + 1)

    outcome = tasks.place_call_task.apply(args=(call.pk,)).get()

    assert outcome == "gave_up"
    assert len(fake_twilio.requests_to("POST", "/Calls.json")) == tasks.PLACE_CALL_RETRIES + 1
    call.refresh_from_db()
    assert call.status == CallStatus.NOT_PLACED
    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.PENDING
    assert contact.next_attempt_at > timezone.now() + datetime.timedelta(minutes=4)


def test_a_lost_creation_answer_leaves_the_call_dialing_and_is_never_redialled(
    running, fake_twilio
) -> None:
    [call] = dispatched(running)
    fake_twilio.lose_next_creation()

    assert place_call(call_id=call.pk) == Dialed.UNCERTAIN
    assert place_call(call_id=call.pk) == Dialed.NOT_PENDING

    call.refresh_from_db()
    assert (call.status, call.provider_sid) == (CallStatus.DIALING, None)
    assert len(fake_twilio.requests_to("POST", "/Calls.json")) == 1


# --- Reconciliation -------------------------------------------------------------------


def later(minutes: int) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(minutes=minutes)


def test_reconcile_adopts_a_call_twilio_created_whose_answer_was_lost(running, fake_twilio) -> None:
    [call] = dispatched(running)
    fake_twilio.lose_next_creation()
    place_call(call_id=call.pk)
    [twilio_call] = fake_twilio.calls
    fake_twilio.set_call(twilio_call["sid"], status="completed", duration="42")

    assert reconcile_calls(now=timezone.now()).adopted == []  # too early to tell
    result = reconcile_calls(now=later(10))

    assert result.adopted == [call.pk]
    call.refresh_from_db()
    assert call.provider_sid == twilio_call["sid"]
    assert (call.status, call.duration_seconds) == (CallStatus.COMPLETED, 42)
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.DONE
    assert len(fake_twilio.requests_to("POST", "/Calls.json")) == 1


def test_reconcile_releases_a_claimed_call_that_never_reached_twilio(running, fake_twilio) -> None:
    [call] = dispatched(running)
    # A worker that died between its claim and the request to Twilio.
    Call.objects.filter(pk=call.pk).update(status=CallStatus.DIALING, dialed_at=timezone.now())

    result = reconcile_calls(now=later(10))

    assert result.released == [call.pk]
    call.refresh_from_db()
    assert call.status == CallStatus.NOT_PLACED
    contact = Contact.objects.get(pk=call.contact_id)
    assert (contact.state, contact.attempts) == (Contact.State.PENDING, 0)
    # Released, the contact is dialled again by the next tick, as a new attempt.
    [again] = Call.objects.filter(pk__in=dispatch().created)
    assert (again.contact_id, again.attempt) == (contact.pk, 2)


def test_reconcile_requeues_pending_calls_whose_task_was_lost(running, fake_twilio) -> None:
    [call] = dispatched(running)

    assert reconcile_calls(now=timezone.now()).requeued == []
    assert reconcile_calls(now=later(5)).requeued == [call.pk]


def test_reconcile_fetches_calls_past_their_longest_life(running, fake_twilio) -> None:
    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    fake_twilio.set_call(
        call.provider_sid, status="no-answer", duration="0", answered_by=None, price=None
    )

    assert reconcile_calls(now=later(5)).refreshed == []  # it may still be ringing
    life = running.ring_timeout_seconds + running.time_limit_seconds
    result = reconcile_calls(now=later(life // 60 + 5))

    assert result.refreshed == [call.pk]
    call.refresh_from_db()
    assert call.status == CallStatus.NO_ANSWER
    assert call.events.filter(payload__CallbackSource="reconciliation").exists()
    assert Contact.objects.get(pk=call.contact_id).state == Contact.State.RETRY


def test_reconcile_keeps_when_twilio_ended_the_call(running, fake_twilio) -> None:
    # given: a call whose final callback never came; Twilio ended it an hour ago
    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    ended = (timezone.now() - datetime.timedelta(hours=1)).replace(microsecond=0)
    fake_twilio.set_call(
        call.provider_sid, status="completed", duration="42", end_time=format_datetime(ended)
    )
    Call.objects.filter(pk=call.pk).update(dialed_at=ended - datetime.timedelta(minutes=2))

    # when
    assert reconcile_calls(now=later(60)).refreshed == [call.pk]

    # then: the end is Twilio's, not the time reconciliation ran; the price Twilio already
    # shows (it priced the call long ago) is kept at once
    call.refresh_from_db()
    assert (call.status, call.ended_at) == (CallStatus.COMPLETED, ended)
    assert (call.price, call.price_unit, call.price_status, call.price_check_at) == (
        Decimal("0.013"),
        "USD",
        PriceStatus.KNOWN,
        None,
    )


def test_reconcile_of_a_call_not_yet_priced_waits_for_its_price(running, fake_twilio) -> None:
    # given: Twilio ended the call a moment ago and shows no price yet
    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    ended = timezone.now().replace(microsecond=0)
    fake_twilio.price_delay = datetime.timedelta(minutes=5)
    fake_twilio.set_call(
        call.provider_sid, status="completed", duration="42", end_time=format_datetime(ended)
    )
    Call.objects.filter(pk=call.pk).update(dialed_at=ended - datetime.timedelta(minutes=2))

    # when
    assert reconcile_calls(now=later(60)).refreshed == [call.pk]

    # then: the price tick asks for it a few seconds after the end
    call.refresh_from_db()
    assert (call.price, call.price_status) == (None, PriceStatus.PENDING)
    assert call.price_check_at == ended + PRICE_FIRST_CHECK


def test_reconcile_of_a_call_twilio_does_not_charge_asks_no_price(running, fake_twilio) -> None:
    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    fake_twilio.set_call(call.provider_sid, status="busy", duration="0")
    life = running.ring_timeout_seconds + running.time_limit_seconds

    assert reconcile_calls(now=later(life // 60 + 5)).refreshed == [call.pk]

    call.refresh_from_db()
    assert (call.status, call.price_status, call.price_check_at) == (
        CallStatus.BUSY,
        PriceStatus.NOT_CHARGED,
        None,
    )


def test_reconcile_fails_a_call_twilio_does_not_know(running, fake_twilio) -> None:
    [call] = dispatched(running)
    Call.objects.filter(pk=call.pk).update(
        status=CallStatus.RINGING, provider_sid="CA" + "f" * 32, dialed_at=timezone.now()
    )

    result = reconcile_calls(now=later(60))

    assert result.refreshed == [call.pk]
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert call.error_code == 20404


# --- The beat tasks -------------------------------------------------------------------


def test_the_dispatch_tick_spreads_the_dials_over_its_interval(
    running, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    for index in range(4):
        add_contact(running, phone=f"+3460000010{index}")
    queued = []
    monkeypatch.setattr(
        tasks.place_call_task,
        "apply_async",
        lambda args, countdown: queued.append((args[0], countdown)),
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.dispatch_calls_task.apply().get()

    assert result == {"created": 4, "deferred": 0, "closed": 0}

    assert [countdown for _id, countdown in queued] == [0.0, 0.5, 1.0, 1.5]
    assert sorted(call_id for call_id, _ in queued) == sorted(
        Call.objects.values_list("pk", flat=True)
    )


def test_do_not_call_entries_are_global_or_per_partner(running, fake_twilio, partner) -> None:
    [call] = dispatched(running)
    DoNotCallFactory(phone=call.to_number, partner=None, source=DoNotCallSource.STAFF)

    assert place_call(call_id=call.pk) == Dialed.RELEASED
    assert cache.get(f"calls:dial-backoff:{running.pk}") is None


def test_a_callback_asked_on_the_call_becomes_the_contacts_next_attempt(
    running, fake_twilio
) -> None:
    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    Call.objects.filter(pk=call.pk).update(flags={"callback_at": "2030-01-02T10:00:00+01:00"})

    record_call_status(
        call_id=call.pk,
        params={"CallSid": call.provider_sid, "CallStatus": "completed", "AnsweredBy": "human"},
    )

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at == datetime.datetime(2030, 1, 2, 9, 0, tzinfo=datetime.UTC)
    assert "2030-01-02 10:00" in contact.state_reason


# --- Prices ---------------------------------------------------------------------------------

SECONDS = datetime.timedelta(seconds=1)


def ended_calls(
    campaign: Campaign,
    fake_twilio,
    *,
    ended: datetime.datetime,
    count: int = 1,
    status: str = "completed",
) -> list[Call]:
    """``count`` calls placed at the fake Twilio that ended with ``status`` at ``ended``,
    as Twilio's final callback and its Call resource say (the resource shows its price
    once the fake's ``price_delay`` has passed since the end)."""
    ended = ended.replace(microsecond=0)
    calls = dispatched(campaign, count)
    for call in calls:
        assert place_call(call_id=call.pk) == Dialed.PLACED
        call.refresh_from_db()
        Call.objects.filter(pk=call.pk).update(dialed_at=ended - datetime.timedelta(minutes=1))
        duration = "42" if status == "completed" else "0"
        fake_twilio.set_call(
            call.provider_sid, status=status, duration=duration, end_time=format_datetime(ended)
        )
        record_call_status(
            call_id=call.pk,
            params={
                "CallSid": call.provider_sid,
                "CallStatus": status,
                "CallDuration": duration,
                "Timestamp": format_datetime(ended),
            },
        )
        call.refresh_from_db()
    return calls


def price_fetches(fake_twilio) -> list[str]:
    """The SIDs of the Call resources asked for, in order."""
    return [
        request.path.rsplit("/", 1)[-1].removesuffix(".json")
        for request in fake_twilio.requests
        if request.method == "GET" and "/Calls/" in request.path
    ]


def price_state(call: Call) -> tuple:
    call.refresh_from_db()
    return (call.price, call.price_unit, call.price_status, call.price_check_at)


def test_check_prices_asks_with_back_off_until_twilio_has_priced_the_call(
    running, fake_twilio
) -> None:
    # given: a call that ended just now, which Twilio prices 40 s after its end
    ended = timezone.now().replace(microsecond=0)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    twilio_now = [ended]
    fake_twilio.clock = lambda: twilio_now[0]
    fake_twilio.price_delay = 40 * SECONDS
    first = ended + PRICE_FIRST_CHECK
    assert price_state(call) == (None, "", PriceStatus.PENDING, first)

    # when the tick runs before the first check is due: Twilio is not asked
    assert check_prices(now=first - SECONDS) == dialing.PriceChecks()
    assert price_fetches(fake_twilio) == []

    # when it is due: Twilio shows no price yet, asked again 15 s later
    twilio_now[0] = first
    assert check_prices(now=first).waiting == [call.pk]
    assert price_state(call) == (None, "", PriceStatus.PENDING, first + 15 * SECONDS)
    assert check_prices(now=first + 14 * SECONDS) == dialing.PriceChecks()

    # still none: asked again after twice as long
    twilio_now[0] = first + 15 * SECONDS
    assert check_prices(now=first + 15 * SECONDS).waiting == [call.pk]
    assert price_state(call) == (None, "", PriceStatus.PENDING, first + 45 * SECONDS)

    # then Twilio has priced it: the cost is kept, within a minute of the end
    twilio_now[0] = first + 45 * SECONDS
    assert check_prices(now=first + 45 * SECONDS).known == [call.pk]
    assert price_state(call) == (Decimal("0.013"), "USD", PriceStatus.KNOWN, None)
    assert price_fetches(fake_twilio) == [call.provider_sid] * 3
    assert first + 45 * SECONDS - ended < datetime.timedelta(minutes=1)
    call.refresh_from_db()
    assert call.price_checks == 3
    # and it is never asked for again
    assert check_prices(now=ended + datetime.timedelta(hours=2)) == dialing.PriceChecks()
    assert len(price_fetches(fake_twilio)) == 3


def test_check_prices_back_off_is_capped_at_an_hour(running, fake_twilio) -> None:
    ended = timezone.now().replace(microsecond=0)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    fake_twilio.price_delay = datetime.timedelta(days=30)
    Call.objects.filter(pk=call.pk).update(price_checks=20)

    check_prices(now=ended + datetime.timedelta(hours=2))

    assert price_state(call)[2:] == (
        PriceStatus.PENDING,
        ended + datetime.timedelta(hours=3),
    )


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_check_prices_never_asks_for_a_call_twilio_does_not_charge(
    running, fake_twilio, status
) -> None:
    ended = timezone.now() - datetime.timedelta(minutes=1)
    [call] = ended_calls(running, fake_twilio, ended=ended, status=status)

    assert check_prices(now=timezone.now() + datetime.timedelta(hours=1)) == dialing.PriceChecks()

    assert price_state(call)[2:] == (PriceStatus.NOT_CHARGED, None)
    assert price_fetches(fake_twilio) == []


def test_check_prices_gives_up_a_day_after_the_end(running, fake_twilio, caplog) -> None:
    # given: a call that ended two days ago, which Twilio never priced
    ended = timezone.now() - datetime.timedelta(days=2)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    fake_twilio.price_delay = datetime.timedelta(days=30)

    # when
    with caplog.at_level(logging.WARNING, logger="calls.dialing"):
        result = check_prices(now=timezone.now())

    # then: asked once more, then given up, and said so
    assert result.unavailable == [call.pk]
    assert price_state(call) == (None, "", PriceStatus.UNAVAILABLE, None)
    assert price_fetches(fake_twilio) == [call.provider_sid]
    assert "given up" in caplog.text


def test_check_prices_a_day_after_the_end_still_keeps_a_price_twilio_shows(
    running, fake_twilio
) -> None:
    ended = timezone.now() - datetime.timedelta(days=2)
    [call] = ended_calls(running, fake_twilio, ended=ended)

    assert check_prices(now=timezone.now()).known == [call.pk]

    assert price_state(call) == (Decimal("0.013"), "USD", PriceStatus.KNOWN, None)


def test_check_prices_a_call_twilio_does_not_know_has_no_price(running, fake_twilio) -> None:
    ended = timezone.now() - datetime.timedelta(minutes=1)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    Call.objects.filter(pk=call.pk).update(provider_sid="CA" + "f" * 32)

    assert check_prices(now=timezone.now()).unavailable == [call.pk]

    assert price_state(call) == (None, "", PriceStatus.UNAVAILABLE, None)
    assert price_fetches(fake_twilio) == ["CA" + "f" * 32]


def test_check_prices_asks_again_later_when_twilio_keeps_failing(
    running, fake_twilio, settings
) -> None:
    # given: two calls due, and Twilio answering 503 to every try of the adapter
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    first, second = ended_calls(running, fake_twilio, ended=ended, count=2)
    fake_twilio.fail_next(503, times=settings.TWILIO_MAX_RETRIES + 1)
    now = timezone.now()

    # when
    result = check_prices(now=now)

    # then: the first is asked again after the back-off, and the tick stopped asking
    # Twilio (the second waits, still due, for the next tick)
    assert result == dialing.PriceChecks(waiting=[first.pk])
    assert price_state(first)[2:] == (PriceStatus.PENDING, now + 15 * SECONDS)
    assert price_state(second)[2:] == (PriceStatus.PENDING, ended + PRICE_FIRST_CHECK)
    assert len(price_fetches(fake_twilio)) == settings.TWILIO_MAX_RETRIES + 1

    # when Twilio is back: both priced
    assert check_prices(now=now + 15 * SECONDS).known == [second.pk, first.pk]
    assert price_state(first)[2] == price_state(second)[2] == PriceStatus.KNOWN


def test_check_prices_with_bad_credentials_backs_off_and_says_so(
    running, fake_twilio, caplog
) -> None:
    # given
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    fake_twilio.fail_next(401, times=2)
    now = timezone.now()

    # when Twilio refuses the credentials twice
    with caplog.at_level(logging.ERROR, logger="calls.dialing"):
        assert check_prices(now=now).waiting == [call.pk]
        assert check_prices(now=now + 15 * SECONDS).waiting == [call.pk]

    # then: each asked once (no retry of a refusal), the second wait twice the first
    assert len(price_fetches(fake_twilio)) == 2
    assert price_state(call)[2:] == (PriceStatus.PENDING, now + 45 * SECONDS)
    assert "refused" in caplog.text
    # and once the credentials are right, the price is kept
    assert check_prices(now=now + 45 * SECONDS).known == [call.pk]


def test_check_prices_two_ticks_at_once_ask_twilio_once_per_call(
    running, fake_twilio, monkeypatch
) -> None:
    # given: two calls due, and a second worker's tick that runs while the first tick
    # waits for Twilio's answer about its first call (after it read which calls are due)
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    first, second = ended_calls(running, fake_twilio, ended=ended, count=2)
    now = timezone.now()
    fetch = telephony.fetch_call
    asked: list[str] = []
    other_tick: list[dialing.PriceChecks] = []

    def fetch_while_another_tick_runs(*, sid: str) -> telephony.ProviderCall:
        asked.append(sid)
        if len(asked) == 1:
            other_tick.append(check_prices(now=now))
        return fetch(sid=sid)

    monkeypatch.setattr(telephony, "fetch_call", fetch_while_another_tick_runs)

    # when
    result = check_prices(now=now)

    # then: each call asked for once; each tick kept the price it asked for
    assert sorted(asked) == sorted([first.provider_sid, second.provider_sid])
    assert result == dialing.PriceChecks(known=[first.pk])
    assert other_tick == [dialing.PriceChecks(known=[second.pk])]
    assert price_state(first)[2] == price_state(second)[2] == PriceStatus.KNOWN


def test_check_prices_asks_again_for_a_call_whose_check_was_lost(running, fake_twilio) -> None:
    # given: a tick claimed the call, then its worker died before asking
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    [call] = ended_calls(running, fake_twilio, ended=ended)
    now = timezone.now()
    Call.objects.filter(pk=call.pk).update(price_check_at=now + dialing.PRICE_CLAIM)

    # then: nobody asks while the claim holds; the next tick after it does
    assert check_prices(now=now) == dialing.PriceChecks()
    assert check_prices(now=now + dialing.PRICE_CLAIM).known == [call.pk]


def test_check_prices_takes_a_bounded_batch(running, fake_twilio) -> None:
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    calls = ended_calls(running, fake_twilio, ended=ended, count=3)

    assert len(check_prices(now=timezone.now(), limit=2).known) == 2
    assert len(check_prices(now=timezone.now(), limit=2).known) == 1
    assert {price_state(call)[2] for call in calls} == {PriceStatus.KNOWN}


def test_the_price_tick_reports_what_it_did(running, fake_twilio) -> None:
    ended = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    ended_calls(running, fake_twilio, ended=ended)

    assert tasks.check_prices_task() == {
        "known": 1,
        "waiting": 0,
        "unavailable": 0,
        "not_charged": 0,
    }
