"""Placing calls and reconciling them: the real twilio SDK against the fake Twilio."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from email.utils import format_datetime
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone, translation

from calls import dialing, pacing, tasks
from calls.dialing import Dialed, place_call, reconcile_calls
from calls.dispatcher import dispatch
from calls.models import Call, CallStatus
from campaigns.models import Campaign, Contact, DoNotCall, DoNotCallSource
from campaigns.services import add_do_not_call, pause_campaign

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
    assert form(request, "Record") == ["true"]
    assert form(request, "RecordingStatusCallback") == [f"{base}/recording#rc=3"]
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
    other = Campaign.objects.create(
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

    # then: the end is Twilio's, not the time reconciliation ran
    call.refresh_from_db()
    assert (call.status, call.ended_at) == (CallStatus.COMPLETED, ended)


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


def test_the_dispatch_tick_spreads_the_dials_over_its_interval(running, monkeypatch) -> None:
    for index in range(4):
        add_contact(running, phone=f"+3460000010{index}")
    queued = []
    monkeypatch.setattr(
        tasks.place_call_task,
        "apply_async",
        lambda args, countdown: queued.append((args[0], countdown)),
    )

    assert tasks.dispatch_calls_task.apply().get() == {"created": 4, "deferred": 0, "closed": 0}

    assert [countdown for _id, countdown in queued] == [0.0, 0.5, 1.0, 1.5]
    assert sorted(call_id for call_id, _ in queued) == sorted(
        Call.objects.values_list("pk", flat=True)
    )


def test_do_not_call_entries_are_global_or_per_partner(running, fake_twilio, partner) -> None:
    [call] = dispatched(running)
    DoNotCall.objects.create(phone=call.to_number, partner=None, source=DoNotCallSource.STAFF)

    assert place_call(call_id=call.pk) == Dialed.RELEASED
    assert cache.get(f"calls:dial-backoff:{running.pk}") is None


def test_a_callback_asked_on_the_call_becomes_the_contacts_next_attempt(
    running, fake_twilio
) -> None:
    from calls.services import record_call_status

    [call] = dispatched(running)
    place_call(call_id=call.pk)
    call.refresh_from_db()
    Call.objects.filter(pk=call.pk).update(outcome={"callback_at": "2030-01-02T10:00:00+01:00"})

    record_call_status(
        call_id=call.pk,
        params={"CallSid": call.provider_sid, "CallStatus": "completed", "AnsweredBy": "human"},
    )

    contact = Contact.objects.get(pk=call.contact_id)
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at == datetime.datetime(2030, 1, 2, 9, 0, tzinfo=datetime.UTC)
    assert "2030-01-02 10:00" in contact.state_reason
