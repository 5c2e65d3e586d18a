"""A campaign's figures so far: contacts by state, calls by status and outcome, answer
rate, talk time and cost, each counted by the database (a few aggregate queries, whatever
the campaign's size)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from django.db.models import Avg, Count, Q, Sum

from campaigns.models import Campaign, Contact

# How an ended call went, as finish_call reads it (calls/services.py), keyed for the API.
CALL_OUTCOMES = ("answered", "voicemail", "busy", "no-answer", "failed", "canceled")


@dataclasses.dataclass(frozen=True)
class Cost:
    currency: str
    amount: Decimal


@dataclasses.dataclass(frozen=True)
class CampaignStats:
    """``answer_rate``: answered calls over ended calls that reached the carrier (None
    before any ended); ``average_answered_seconds``: over answered calls with a duration;
    ``cost``: what the carrier charged so far, one sum per currency."""

    contacts_by_state: dict[str, int]
    calls_by_status: dict[str, int]
    calls_by_outcome: dict[str, int]
    opted_out: int
    answer_rate: float | None
    average_answered_seconds: float | None
    cost: list[Cost]

    @property
    def contacts(self) -> int:
        return sum(self.contacts_by_state.values())

    @property
    def calls(self) -> int:
        return sum(self.calls_by_status.values())


def campaign_stats(*, campaign: Campaign) -> CampaignStats:
    """``campaign``'s figures now, in four queries."""
    # calls builds on campaigns (dependencies run one way), so the import waits until here.
    from calls.models import CallStatus
    from calls.services import MACHINE_ANSWERS

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
    answered = completed & ~machine
    ended_statuses = [
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
    ]
    figures = calls.aggregate(
        answered=Count("pk", filter=answered),
        voicemail=Count("pk", filter=completed & machine),
        # Refused before reaching the carrier (no SID): never rang anyone.
        ended=Count("pk", filter=Q(status__in=ended_statuses) & Q(provider_sid__isnull=False)),
        opted_out=Count("pk", filter=Q(outcome__opted_out=True)),
        average_answered=Avg("duration_seconds", filter=answered),
    )
    cost = [
        Cost(currency=unit, amount=amount)
        for unit, amount in calls.filter(price__isnull=False)
        .values("price_unit")
        .annotate(amount=Sum("price"))
        .order_by("price_unit")
        .values_list("price_unit", "amount")
    ]
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
        cost=cost,
    )
