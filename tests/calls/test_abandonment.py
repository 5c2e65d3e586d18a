"""Abandoned calls (calls/abandonment.py): the definition on its edges, a campaign's rate
over 30 days, the alert at 1 % (once) and the pause at 3 % through the status callback
that ends a call, and the gauge /metrics serves."""

from __future__ import annotations

import datetime
import logging
from itertools import count

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEntry
from calls import telephony
from calls.abandonment import (
    abandonment_by_campaign,
    abandonment_of,
    campaign_abandonment,
    check_abandonment,
    with_abandonment,
)
from calls.models import AnsweredBy, Call, CallDirection
from campaigns.models import Campaign
from campaigns.reports import Abandonment
from campaigns.services import start_warnings
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db

APP_URL = "https://calls.example.com"
SIDS = count(1)


@pytest.fixture(autouse=True)
def _twilio_settings(settings) -> None:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "test-auth-token"
    settings.ABANDONMENT_MIN_ANSWERED = 100


@pytest.fixture
def running(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def sid() -> str:
    return f"CA{next(SIDS):032d}"


def answered(
    campaign: Campaign,
    first_audio_ms: int | None = 800,
    *,
    answered_by: str = AnsweredBy.HUMAN,
    status: str = Call.Status.COMPLETED,
    ago: datetime.timedelta = datetime.timedelta(hours=1),
    **fields: object,
) -> Call:
    """A call of ``campaign`` answered ``ago``, its first audio heard after the time given."""
    at = timezone.now() - ago
    fields = {
        "dialed_at": at - datetime.timedelta(seconds=10),
        "answered_at": at,
        "created_at": at - datetime.timedelta(seconds=11),
        **fields,
    }
    return CallFactory(
        contact__campaign=campaign,
        provider_sid=sid(),
        status=status,
        answered_by=answered_by,
        first_audio_ms=first_audio_ms,
        **fields,
    )


def figures(campaign: Campaign) -> tuple[int, int]:
    found = campaign_abandonment(campaign=campaign)
    return found.abandoned, found.answered


# --- The definition -------------------------------------------------------------------------


def test_first_audio_at_exactly_two_seconds_is_not_abandoned(campaign) -> None:
    answered(campaign, 2_000)

    assert figures(campaign) == (0, 1)


def test_first_audio_a_millisecond_past_two_seconds_is_abandoned(campaign) -> None:
    answered(campaign, 2_001)

    assert figures(campaign) == (1, 1)


@pytest.mark.parametrize(
    "machine",
    [
        AnsweredBy.MACHINE_START,
        AnsweredBy.MACHINE_END_BEEP,
        AnsweredBy.MACHINE_END_SILENCE,
        AnsweredBy.MACHINE_END_OTHER,
        AnsweredBy.FAX,
    ],
)
def test_a_call_a_machine_answered_is_not_counted(campaign, machine) -> None:
    answered(campaign, 9_000, answered_by=machine)
    answered(campaign, None, answered_by=machine)

    assert figures(campaign) == (0, 0)


@pytest.mark.parametrize("verdict", [AnsweredBy.HUMAN, AnsweredBy.UNKNOWN, ""])
def test_a_person_or_no_machine_verdict_counts_as_answered_live(campaign, verdict) -> None:
    answered(campaign, 3_000, answered_by=verdict)
    answered(campaign, 300, answered_by=verdict)

    assert figures(campaign) == (1, 2)


def test_an_answered_call_that_ended_without_first_audio_is_abandoned(campaign) -> None:
    answered(campaign, None)

    assert figures(campaign) == (1, 1)


def test_a_call_still_going_on_without_first_audio_yet_is_not_abandoned_yet(campaign) -> None:
    answered(campaign, None, status=Call.Status.IN_PROGRESS)
    answered(campaign, 2_500, status=Call.Status.IN_PROGRESS)

    assert figures(campaign) == (1, 2)


def test_a_completed_call_whose_answer_time_never_came_counts_by_its_creation(
    campaign,
) -> None:
    # Twilio's `answered` callback lost: completed means answered all the same.
    answered(campaign, 2_500, answered_at=None)

    assert figures(campaign) == (1, 1)


def test_unanswered_and_inbound_calls_are_not_counted(campaign) -> None:
    for status in (Call.Status.BUSY, Call.Status.NO_ANSWER, Call.Status.FAILED):
        CallFactory(contact__campaign=campaign, status=status, first_audio_ms=None)
    answered(campaign, None, direction=CallDirection.INBOUND, attempt=None)

    assert figures(campaign) == (0, 0)


def test_calls_answered_more_than_30_days_ago_are_left_out(campaign) -> None:
    answered(campaign, 5_000, ago=datetime.timedelta(days=30, minutes=1))
    answered(campaign, 5_000, ago=datetime.timedelta(days=29, hours=23))

    assert figures(campaign) == (1, 1)


def test_other_campaigns_calls_are_not_counted(campaign, partner) -> None:
    other = Campaign.objects.create(partner=partner, name="Other")
    answered(other, 5_000)

    assert figures(campaign) == (0, 0)


# --- The rate -------------------------------------------------------------------------------


def test_the_rate_is_abandoned_over_live_answered_calls(campaign) -> None:
    for _ in range(247):
        answered(campaign, 600)
    for _ in range(3):
        answered(campaign, 2_400)

    found = campaign_abandonment(campaign=campaign)

    assert (found.abandoned, found.answered, found.window_days) == (3, 250, 30)
    assert found.rate == pytest.approx(0.012)
    with translation.override("en"):
        assert found.label() == "1.2 % — 3 of 250 live-answered calls in 30 days"


def test_a_campaign_without_live_answered_calls_has_no_rate(campaign) -> None:
    found = campaign_abandonment(campaign=campaign)

    assert found.rate is None
    with translation.override("en"):
        assert found.label() == "No live-answered calls in 30 days"


def test_the_rate_is_one_aggregate_query(campaign, django_assert_num_queries) -> None:
    for first_audio in (100, 3_000, None):
        answered(campaign, first_audio)

    with django_assert_num_queries(1):
        campaign_abandonment(campaign=campaign)


def test_with_abandonment_counts_each_campaign_as_campaign_abandonment_does(
    campaign, partner
) -> None:
    other = Campaign.objects.create(partner=partner, name="Other")
    answered(campaign, 3_000)
    answered(campaign, 100)
    answered(campaign, 100, ago=datetime.timedelta(days=31))

    rows = {
        row.pk: (row.abandoned_calls, row.live_answered_calls)
        for row in with_abandonment(Campaign.objects.all())
    }

    assert rows == {campaign.pk: (1, 2), other.pk: (0, 0)}


def test_the_judged_rate_takes_at_least_the_minimum_of_calls(settings) -> None:
    few = Abandonment(abandoned=1, answered=4, window_days=30)
    many = Abandonment(abandoned=4, answered=200, window_days=30)

    settings.ABANDONMENT_MIN_ANSWERED = 100
    assert (few.judged_rate, many.judged_rate) == (0.01, 0.02)
    settings.ABANDONMENT_MIN_ANSWERED = 1
    assert (few.judged_rate, many.judged_rate) == (0.25, 0.02)


# --- The alert and the pause, through the status callback that ends the call ---------------


def rfc2822(moment: datetime.datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


def post_status(client, call: Call, status: str, sequence: int, **extra: str):
    """Twilio's status callback for ``call``, signed as Twilio signs it."""
    params = {
        "CallSid": call.provider_sid or "",
        "AccountSid": "AC" + "1" * 32,
        "Direction": "outbound-api",
        "CallStatus": status,
        "SequenceNumber": str(sequence),
        "Timestamp": rfc2822(timezone.now().astimezone(datetime.UTC)),
        **extra,
    }
    path = reverse("calls:status", kwargs={"call_id": call.pk})
    signature = telephony.sign_request(url=APP_URL + path, params=params)
    response = client.post(path, params, headers={"x-twilio-signature": signature})
    assert response.status_code == 204
    return response


def end_call(client, campaign: Campaign, first_audio_ms: int | None, **extra: str) -> Call:
    """A call the dialer placed for ``campaign``: answered, its first audio heard after
    ``first_audio_ms``, then completed, through Twilio's signed callbacks."""
    call = CallFactory(
        dialing=True,
        contact__campaign=campaign,
        provider_sid=sid(),
        dialed_at=timezone.now() - datetime.timedelta(minutes=1),
    )
    post_status(client, call, "in-progress", 2)
    Call.objects.filter(pk=call.pk).update(first_audio_ms=first_audio_ms)
    post_status(client, call, "completed", 3, CallDuration="30", **extra)
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED
    return call


def audit_entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def test_an_abandoned_call_at_three_percent_pauses_the_campaign(client, running) -> None:
    # given 97 good calls and 2 abandoned ones in the window
    for _ in range(97):
        answered(running, 700)
    for _ in range(2):
        answered(running, 2_600)

    # when a third abandoned call ends, through Twilio's callbacks
    call = end_call(client, running, 2_300)

    # then 3 of 100 live-answered calls: the campaign is paused, saying why
    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED
    assert "3 " in running.state_reason and " 100 " in running.state_reason
    (entry,) = audit_entries("campaign.auto_paused")
    assert (entry.partner_id, entry.object_type, entry.object_id) == (
        running.partner_id,
        "campaigns.campaign",
        str(running.pk),
    )
    assert entry.details["abandoned"] == 3
    assert entry.details["answered"] == 100
    assert entry.details["rate"] == pytest.approx(0.03)
    assert entry.details["call_id"] == call.pk


def test_the_pause_reason_gives_the_figures_in_english(client, running) -> None:
    for _ in range(97):
        answered(running, 700)
    for _ in range(2):
        answered(running, 2_600)

    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    end_call(client, running, None)

    running.refresh_from_db()
    assert running.state_reason.startswith(
        "Paused automatically: 3.0 % — 3 of 100 live-answered calls in 30 days were abandoned"
    )


def test_below_three_percent_the_campaign_keeps_running(client, running) -> None:
    for _ in range(98):
        answered(running, 700)
    answered(running, 2_600)

    end_call(client, running, 2_300)  # 2 of 100

    running.refresh_from_db()
    assert running.state == Campaign.State.RUNNING
    assert not audit_entries("campaign.auto_paused")


def test_a_good_call_never_pauses_even_at_three_percent(client, running) -> None:
    # given a rate already above 3 % (4 of 99)
    for _ in range(95):
        answered(running, 700)
    for _ in range(4):
        answered(running, 2_600)

    # when a good call ends
    end_call(client, running, 400)

    # then only an abandoned call pauses
    running.refresh_from_db()
    assert running.state == Campaign.State.RUNNING


def test_the_minimum_keeps_one_slow_call_among_the_first_from_pausing(
    client, running, settings
) -> None:
    # given the default minimum: the rate is taken over at least 100 calls
    answered(running, 600)

    # when the second call is abandoned (1 of 2: 50 %, judged 1 %)
    end_call(client, running, 4_000)

    # then it runs on
    running.refresh_from_db()
    assert running.state == Campaign.State.RUNNING


def test_the_third_abandoned_call_pauses_a_young_campaign(client, running) -> None:
    answered(running, 600)
    answered(running, 2_500)
    answered(running, 2_500)

    end_call(client, running, 4_000)  # 3 of 4, judged 3 of 100

    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED


def test_a_minimum_of_one_pauses_on_the_first_abandoned_call(client, running, settings) -> None:
    settings.ABANDONMENT_MIN_ANSWERED = 1

    end_call(client, running, 2_001)

    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED


def test_a_machine_answer_never_pauses(client, running, settings) -> None:
    settings.ABANDONMENT_MIN_ANSWERED = 1

    end_call(client, running, None, AnsweredBy="machine_end_beep")

    running.refresh_from_db()
    assert running.state == Campaign.State.RUNNING
    assert not audit_entries("campaign.abandonment_alert")


def test_a_paused_campaign_is_left_paused_without_a_second_entry(client, running, settings) -> None:
    settings.ABANDONMENT_MIN_ANSWERED = 1
    Campaign.objects.filter(pk=running.pk).update(state=Campaign.State.PAUSED, state_reason="")

    end_call(client, running, 5_000)

    running.refresh_from_db()
    assert (running.state, running.state_reason) == (Campaign.State.PAUSED, "")
    assert not audit_entries("campaign.auto_paused")


def test_a_resumed_campaign_is_paused_again_by_its_next_abandoned_call(
    client, running, settings
) -> None:
    # given a campaign paused at 3 of 100, then resumed by staff
    for _ in range(97):
        answered(running, 700)
    for _ in range(2):
        answered(running, 2_600)
    end_call(client, running, 2_300)
    Campaign.objects.filter(pk=running.pk).update(state=Campaign.State.RUNNING)

    # when a good call ends (3 of 101), then an abandoned one (4 of 102)
    end_call(client, running, 500)
    running.refresh_from_db()
    assert running.state == Campaign.State.RUNNING
    end_call(client, running, 2_900)

    # then it is paused again
    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED
    assert [entry.details["abandoned"] for entry in audit_entries("campaign.auto_paused")] == [
        3,
        4,
    ]


def test_the_alert_at_one_percent_is_raised_once(client, running, caplog) -> None:
    # given 98 good calls
    for _ in range(98):
        answered(running, 700)

    # when an abandoned call ends (1 of 99: judged 1 %), then another (2 of 100)
    with caplog.at_level(logging.WARNING, logger="calls.abandonment"):
        end_call(client, running, 2_200)
        running.refresh_from_db()
        alerted_at = running.abandonment_alerted_at
        end_call(client, running, 2_200)

    # then the alert was logged and audited once, at the first
    assert alerted_at is not None
    running.refresh_from_db()
    assert running.abandonment_alerted_at == alerted_at
    (entry,) = audit_entries("campaign.abandonment_alert")
    assert (entry.details["abandoned"], entry.details["answered"]) == (1, 99)
    warnings = [r for r in caplog.records if "1% alert" in r.getMessage()]
    assert len(warnings) == 1
    assert running.state == Campaign.State.RUNNING


def test_no_alert_below_one_percent(client, running) -> None:
    for _ in range(150):
        answered(running, 700)

    end_call(client, running, 2_200)  # 1 of 151

    running.refresh_from_db()
    assert running.abandonment_alerted_at is None
    assert not audit_entries("campaign.abandonment_alert")


def test_check_abandonment_reads_nothing_more_for_an_unanswered_call(
    running, django_assert_num_queries
) -> None:
    call = CallFactory(contact__campaign=running, status=Call.Status.BUSY)

    with django_assert_num_queries(1):
        check_abandonment(call=call)


# --- The gauge ------------------------------------------------------------------------------


def test_the_gauge_reads_each_running_campaigns_rate(running, partner) -> None:
    paused = Campaign.objects.create(partner=partner, name="Paused", state="paused")
    quiet = Campaign.objects.create(partner=partner, name="Quiet", state="running")
    answered(running, 3_000)
    for _ in range(3):
        answered(running, 100)
    answered(paused, 3_000)

    assert abandonment_by_campaign() == {str(running.pk): 0.25, str(quiet.pk): 0.0}


def test_metrics_serve_the_abandonment_gauge(client, running, settings) -> None:
    settings.METRICS_OPEN = True
    answered(running, 3_000)
    answered(running, 100)

    page = client.get(reverse("metrics")).content.decode()

    assert f'callcenter_campaign_abandonment_ratio{{campaign="{running.pk}"}} 0.5' in page


def test_resuming_at_the_limit_warns_that_the_next_abandoned_call_pauses(running) -> None:
    for _ in range(96):
        answered(running, 700)
    for _ in range(4):
        answered(running, 2_600)

    with translation.override("en"):
        warnings = start_warnings(campaign=running)

    assert any("next abandoned call pauses it again" in w and "4 of 100" in w for w in warnings)


def test_resuming_below_the_limit_warns_of_nothing(running) -> None:
    for _ in range(98):
        answered(running, 700)
    for _ in range(2):
        answered(running, 2_600)

    assert start_warnings(campaign=running) == []


def test_abandonment_of_counts_each_campaign_as_campaign_abandonment_does(
    campaign, partner, django_assert_num_queries
) -> None:
    other = Campaign.objects.create(partner=partner, name="Other")
    quiet = Campaign.objects.create(partner=partner, name="Quiet")
    answered(campaign, 3_000)
    answered(campaign, 100)
    answered(campaign, 100, ago=datetime.timedelta(days=31))
    answered(other, 2_500)

    with django_assert_num_queries(1):
        figures = abandonment_of([campaign.pk, other.pk, quiet.pk])

    assert figures == {
        row.pk: campaign_abandonment(campaign=row) for row in (campaign, other, quiet)
    }
    assert figures[campaign.pk] == Abandonment(abandoned=1, answered=2, window_days=30)
    assert figures[quiet.pk] == Abandonment(abandoned=0, answered=0, window_days=30)
