"""The dispatcher: due contacts become calls, within pacing, fairly, never twice."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connections
from django.utils import timezone, translation

from calls.dispatcher import dispatch
from calls.models import Call
from campaigns.models import Campaign, Contact
from tests.factories import CampaignFactory, ContactFactory, DoNotCallFactory

# A Wednesday at noon in Madrid: inside every profile's calling window.
NOON = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)


@pytest.fixture
def running(campaign) -> Campaign:
    campaign.state = Campaign.State.RUNNING
    campaign.compliance_profile = "es"
    campaign.caller_number = "+34910000000"
    campaign.max_concurrent_calls = 100
    campaign.calls_per_second = 100
    campaign.save()
    return campaign


def add_contacts(campaign: Campaign, count: int, *, start: int = 1) -> list[Contact]:
    return Contact.objects.bulk_create(
        Contact(
            campaign=campaign,
            phone=f"+3491{index:07d}",
            time_zone="Europe/Madrid",
            variables={"first_name": f"Ana {index}"},
        )
        for index in range(start, start + count)
    )


@pytest.fixture(autouse=True)
def generous_account(settings, tmp_path) -> None:
    settings.TWILIO_MAX_CPS = 100
    # Full buckets for every test: on files, a folder of its own; on Redis, no old keys.
    settings.DATA_DIR = tmp_path
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)


def test_dispatch_creates_pending_calls_and_marks_contacts_calling(running) -> None:
    contacts = add_contacts(running, 3)

    result = dispatch(now=NOON)

    assert len(result.created) == 3
    calls = Call.objects.order_by("pk")
    assert [(c.contact_id, c.attempt, c.status) for c in calls] == [
        (contact.pk, 1, "pending") for contact in contacts
    ]
    assert {c.from_number for c in calls} == {"+34910000000"}
    assert set(Contact.objects.values_list("state", "attempts")) == {("calling", 1)}


def test_dispatch_again_creates_nothing_while_calls_are_live(running) -> None:
    add_contacts(running, 3)
    dispatch(now=NOON)

    assert dispatch(now=NOON + datetime.timedelta(seconds=5)).created == []
    assert Call.objects.count() == 3


def test_dispatch_respects_max_concurrent_calls(running) -> None:
    running.max_concurrent_calls = 2
    running.save()
    add_contacts(running, 5)

    first = dispatch(now=NOON)
    second = dispatch(now=NOON + datetime.timedelta(seconds=5))

    assert (len(first.created), len(second.created)) == (2, 0)


def test_dispatch_never_asks_faster_than_the_account_cps(running, settings) -> None:
    settings.TWILIO_MAX_CPS = 1
    add_contacts(running, 10)

    created = len(dispatch(now=NOON).created)

    # one tick's worth of the account's single call per second, however much room
    assert 1 <= created <= 2


def test_dispatch_puts_off_contacts_outside_their_window(running) -> None:
    add_contacts(running, 1)
    saturday = datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.UTC)

    result = dispatch(now=saturday)

    contact = Contact.objects.get()
    assert result.created == [] and result.deferred == 1
    assert contact.state == "pending"
    # Monday 30 November 2026, 09:00 in Madrid
    assert contact.next_attempt_at == datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
    assert contact.state_reason
    # and it is not looked at again before then
    assert dispatch(now=saturday + datetime.timedelta(hours=1)).deferred == 0


def test_dispatch_closes_contacts_on_a_do_not_call_list(running) -> None:
    (contact,) = add_contacts(running, 1)
    DoNotCallFactory(partner=None, phone=contact.phone)

    result = dispatch(now=NOON)

    contact.refresh_from_db()
    assert result.created == [] and result.closed == 1
    assert contact.state == "failed"
    assert Call.objects.count() == 0


def test_dispatch_closes_contacts_missing_a_variable(running) -> None:
    ContactFactory(campaign=running, phone="+34910000001", time_zone="Europe/Madrid")

    dispatch(now=NOON)

    contact = Contact.objects.get()
    assert contact.state == "failed"
    assert "first_name" in contact.state_reason


def test_dispatch_skips_campaigns_that_are_not_running(running) -> None:
    add_contacts(running, 2)
    running.state = Campaign.State.PAUSED
    running.save()

    assert dispatch(now=NOON).created == []


def test_dispatch_shares_the_account_fairly_between_campaigns(
    running, partner, call_template, settings
) -> None:
    settings.TWILIO_MAX_CPS = 2  # four calls per two-second tick for everyone
    other = CampaignFactory(
        partner=partner,
        name="Other",
        template=call_template,
        state="running",
        compliance_profile="es",
        caller_number="+34910000000",
        max_concurrent_calls=100,
        calls_per_second=100,
    )
    add_contacts(running, 10)
    add_contacts(other, 10, start=100)

    dispatch(now=NOON)

    per_campaign = sorted(
        Call.objects.values_list("campaign", flat=True).order_by("campaign").distinct()
    )
    assert per_campaign == sorted([running.pk, other.pk])
    counts = [Call.objects.filter(campaign=c).count() for c in (running, other)]
    assert abs(counts[0] - counts[1]) <= 1


@pytest.mark.django_db(transaction=True)
def test_dispatch_racing_dispatchers_never_dial_a_contact_twice(partner, call_template) -> None:
    # given a running campaign with 40 contacts and four dispatchers ticking at once
    campaign = CampaignFactory(
        partner=partner,
        name="Race",
        template=call_template,
        state="running",
        compliance_profile="none",
        caller_number="+34910000000",
        max_concurrent_calls=1000,
        calls_per_second=500,
    )
    add_contacts(campaign, 40)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            barrier.wait()
            for tick in range(5):
                dispatch(now=timezone.now() + datetime.timedelta(seconds=tick))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    from django.test import override_settings

    with override_settings(TWILIO_MAX_CPS=1000):
        threads = [threading.Thread(target=dispatcher) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    # then every contact has exactly one call and one attempt
    assert errors == []
    assert Call.objects.count() == 40
    assert set(Call.objects.values_list("attempt", flat=True)) == {1}
    assert Call.objects.values("contact").distinct().count() == 40
    assert set(Contact.objects.values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_dispatch_racing_dispatchers_share_the_campaigns_concurrency(
    partner, call_template
) -> None:
    # given a campaign with room for 10 live calls, 40 contacts and four dispatchers at once
    campaign = CampaignFactory(
        partner=partner,
        name="Race",
        template=call_template,
        state="running",
        compliance_profile="none",
        caller_number="+34910000000",
        max_concurrent_calls=10,
        calls_per_second=500,
    )
    add_contacts(campaign, 40)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            barrier.wait()
            dispatch()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    from django.test import override_settings

    with override_settings(TWILIO_MAX_CPS=1000):
        threads = [threading.Thread(target=dispatcher) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    # then the four of them made as many calls as one would: the campaign's room
    assert errors == []
    assert Call.objects.live().count() == 10


def test_a_campaign_its_dispatcher_could_call_nobody_of_completes_saying_why(running) -> None:
    # given contacts none of whom can be called before the campaign's end, an hour away:
    # two lack the first name, one is on the do-not-call list, one is in New York (06:00)
    from campaigns.services import advance_campaigns

    running.ends_at = NOON + datetime.timedelta(hours=1)
    running.save()
    named = {"first_name": "Ana"}
    for phone, variables, zone in [
        ("+34910000001", {}, "Europe/Madrid"),
        ("+34910000002", {"first_name": " "}, "Europe/Madrid"),
        ("+34910000003", named, "Europe/Madrid"),
        ("+12125550100", named, "America/New_York"),
    ]:
        ContactFactory(campaign=running, phone=phone, variables=variables, time_zone=zone)
    DoNotCallFactory(partner=running.partner, phone="+34910000003")

    # when the dispatcher closes each of them, and beat looks at the campaign
    with translation.override("en"):
        result = dispatch(now=NOON)
        counts = advance_campaigns(now=NOON + datetime.timedelta(minutes=1))

    # then it completed, without a call, and its reason says why nobody was called
    assert (result.created, result.closed) == ([], 4)
    assert counts["completed"] == 1
    running.refresh_from_db()
    assert running.state == Campaign.State.COMPLETED
    assert running.state_reason == (
        "No call was made: of its 4 contacts, 2 lack first_name, 1 is on a do-not-call list; "
        "1 could not be called for another reason (outside the calling window in "
        "America/New_York (2026-11-25 06:00 there))."
    )
