"""A campaign's figures so far: contacts by state, calls by status and outcome, answer
rate, talk time and cost, each counted by the database (a few aggregate queries, whatever
the campaign's size).

They count calls, so they live in calls, above campaigns: the campaign pages that show
them reach them through campaigns.reports, which calls fills in (calls/apps.py)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from django.db.models import Avg, Count, Func, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncHour
from django.utils import timezone

from calls.costs import Cost, campaign_cost
from calls.models import LIVE_STATUSES, MACHINE_ANSWERS, Call, CallDirection, CallStatus
from campaigns.models import Campaign, Contact

# How an ended call went, as finish_call reads it (calls/services.py), keyed for the API.
CALL_OUTCOMES = ("answered", "voicemail", "busy", "no-answer", "failed", "canceled")
# Contacts the campaign is through with: nobody calls them again.
FINISHED_CONTACT_STATES = (
    Contact.State.DONE,
    Contact.State.FAILED,
    Contact.State.EXHAUSTED,
    Contact.State.OPTED_OUT,
)


def answered_calls() -> Q:
    """Calls of ours a person answered: completed, and not by a machine."""
    return (
        Q(direction=CallDirection.OUTBOUND)
        & Q(status=CallStatus.COMPLETED)
        & ~Q(answered_by__in=MACHINE_ANSWERS)
    )


def ended_calls() -> Q:
    """Ended calls of ours that reached the carrier: what an answer rate is taken over. (A
    call refused before reaching it has no SID: it never rang anyone. A contact ringing us
    back is no call of ours to answer.)"""
    ended = [
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
    ]
    return Q(direction=CallDirection.OUTBOUND, status__in=ended) & Q(provider_sid__isnull=False)


@dataclasses.dataclass(frozen=True)
class CampaignStats:
    """``answer_rate``: answered calls over ended calls that reached the carrier (None
    before any ended); ``average_answered_seconds``: over answered calls with a duration;
    ``cost``: what the calls cost so far (telephony, speech, model; calls.costs)."""

    contacts_by_state: dict[str, int]
    calls_by_status: dict[str, int]
    calls_by_outcome: dict[str, int]
    opted_out: int
    answer_rate: float | None
    average_answered_seconds: float | None
    cost: Cost

    @property
    def contacts(self) -> int:
        return sum(self.contacts_by_state.values())

    @property
    def calls(self) -> int:
        return sum(self.calls_by_status.values())


def campaign_stats(*, campaign: Campaign) -> CampaignStats:
    """``campaign``'s figures now, in a few aggregate queries."""
    contacts = dict(
        campaign.contacts.order_by()
        .values("state")
        .annotate(count=Count("pk"))
        .values_list("state", "count")
    )
    calls = campaign.calls.order_by()
    by_status = dict(
        calls.values("status").annotate(count=Count("pk")).values_list("status", "count")
    )
    completed = Q(status=CallStatus.COMPLETED)
    machine = Q(answered_by__in=MACHINE_ANSWERS)
    answered = answered_calls()
    figures = calls.aggregate(
        answered=Count("pk", filter=answered),
        voicemail=Count("pk", filter=completed & machine),
        ended=Count("pk", filter=ended_calls()),
        opted_out=Count("pk", filter=Q(flags__opted_out=True)),
        average_answered=Avg("duration_seconds", filter=answered),
    )
    outcomes = {
        "answered": figures["answered"],
        "voicemail": figures["voicemail"],
        **{
            status: by_status.get(status, 0)
            for status in ("busy", "no-answer", "failed", "canceled")
        },
    }
    average = figures["average_answered"]
    return CampaignStats(
        contacts_by_state={state: contacts.get(state, 0) for state in Contact.State.values},
        calls_by_status={status: by_status.get(status, 0) for status in CallStatus.values},
        calls_by_outcome=outcomes,
        opted_out=figures["opted_out"],
        answer_rate=figures["answered"] / figures["ended"] if figures["ended"] else None,
        average_answered_seconds=float(average) if average is not None else None,
        cost=campaign_cost(campaign_id=campaign.pk),
    )


def live_calls_by_campaign_state() -> dict[str, int]:
    """Live calls now by their campaign's state, every state listed (0 for none): the gauge
    callcenter_live_calls (callcenter/metrics.py), in one aggregate query."""
    counts = dict(
        Call.objects.live()
        .order_by()
        .values("campaign__state")
        .annotate(count=Count("pk"))
        .values_list("campaign__state", "count")
    )
    return {state: counts.get(state, 0) for state in Campaign.State.values}


def with_progress(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """``campaigns`` each with ``contacts_total``, ``contacts_done`` (finished contacts),
    ``live_calls``, ``answered_calls`` and ``ended_calls`` counted by the database: one
    query for a page of campaigns, however many contacts and calls they have."""
    return with_contacts_done(campaigns).annotate(
        answered_calls=_per_campaign(Call.objects.filter(answered_calls())),
        ended_calls=_per_campaign(Call.objects.filter(ended_calls())),
    )


def with_contacts_done(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """``campaigns`` each with ``contacts_total``, ``contacts_done`` and ``live_calls``:
    the progress alone, without reading every call as the answer rate does."""
    return campaigns.annotate(
        contacts_total=_per_campaign(Contact.objects.all()),
        contacts_done=_per_campaign(Contact.objects.filter(state__in=FINISHED_CONTACT_STATES)),
        live_calls=_per_campaign(Call.objects.filter(status__in=LIVE_STATUSES)),
    )


def _per_campaign(rows: QuerySet) -> Subquery:
    """How many of ``rows`` belong to the outer query's campaign."""
    # COUNT(*) without GROUP BY: one row, 0 for none, and on PostgreSQL a third quicker
    # than Count() grouped by the campaign over a campaign of 100,000 contacts.
    counted = (
        rows.filter(campaign=OuterRef("pk"))
        .order_by()
        .annotate(count=Func(template="COUNT(*)", output_field=IntegerField()))
        .values("count")
    )
    return Subquery(counted, output_field=IntegerField())


@dataclasses.dataclass(frozen=True)
class Hour:
    """The calls a campaign made in one hour (by when each was created): how many, and
    of the ended ones that reached the carrier, how many a person answered."""

    start: datetime.datetime
    calls: int
    answered: int
    ended: int

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.ended if self.ended else None


def calls_by_hour(*, campaign: Campaign, until: datetime.datetime, hours: int) -> list[Hour]:
    """``campaign``'s calls in each of the ``hours`` hours up to ``until``'s, oldest first,
    every hour listed (an hour without calls counts zero). One query.

    Hours are counted in UTC, where each is an hour (the night clocks go back has two
    local 02:00s, which a local count would add up), and start in the current time zone.
    """
    zone = timezone.get_current_timezone()
    last = until.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    first = last - datetime.timedelta(hours=hours - 1)
    counted = {
        row["hour"]: row
        for row in campaign.calls.order_by()
        .filter(created_at__gte=first, created_at__lt=last + datetime.timedelta(hours=1))
        .annotate(hour=TruncHour("created_at", tzinfo=datetime.UTC))
        .values("hour")
        .annotate(
            calls=Count("pk"),
            answered=Count("pk", filter=answered_calls()),
            ended=Count("pk", filter=ended_calls()),
        )
    }
    figures = []
    for index in range(hours):
        start = first + datetime.timedelta(hours=index)
        row: Mapping[str, Any] = counted.get(start, {})
        figures.append(
            Hour(
                start=timezone.localtime(start, zone),
                calls=row.get("calls", 0),
                answered=row.get("answered", 0),
                ended=row.get("ended", 0),
            )
        )
    return figures
