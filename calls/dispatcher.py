"""The dispatcher: on each beat tick, due contacts of running campaigns become calls.

Capacity per campaign is its room under ``max_concurrent_calls`` and under its partner's
cap on calls at once across its campaigns, bounded by three token buckets (the account's
``TWILIO_MAX_CPS``, shared by every campaign and worker, the partner's
``calls_per_second_cap``, shared by its campaigns, and the campaign's own
``calls_per_second``, clamped to that cap); the account's tokens are shared among
campaigns round-robin, from an offset that turns every tick. A campaign whose caller
number, transfer number or compliance profile its partner's limits no longer allow is
paused, saying why (campaigns/limits.py). Dispatchers running at once take turns on a
partner and a campaign (locks on their rows) and count their room again in their turn;
contacts are
taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so they never pick the same contact, and
the database's constraints (one live call per contact, one call per attempt) stand behind
that. Each contact selected or put off is recorded in the audit trail (calls/decisions.py),
in one insert per batch at the end of its transaction.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from audit import services as audit
from callcenter.metrics import DISPATCH_CALLS_CREATED, DISPATCH_LAG
from callcenter.text import truncate
from calls import decisions
from calls.models import Call
from calls.pacing import backing_off, take_tokens
from campaigns import limits
from campaigns.eligibility import (
    Eligibility,
    ReasonCode,
    do_not_call_and_erased,
    evaluate,
    history_hours,
)
from campaigns.models import Campaign, Contact, Partner
from campaigns.services import (
    CampaignStateError,
    PutOff,
    mark_contacts_calling,
    pause_campaign,
    put_off,
    put_off_contacts,
)
from campaigns.suppression import Listing, listings

logger = logging.getLogger(__name__)

# The beat interval of the dispatch tick; buckets hold one interval's worth of tokens.
DISPATCH_INTERVAL_SECONDS = 2.0
# Contacts read per free slot: some of them turn out not dialable right now.
CANDIDATES_PER_SLOT = 3


@dataclass
class DispatchResult:
    """One tick: calls created, contacts put off to a later time, contacts closed."""

    created: list[int]
    deferred: int = 0
    closed: int = 0


def dispatch(*, now: datetime.datetime | None = None) -> DispatchResult:
    """Turn due contacts of running campaigns into pending calls, within capacity.

    Calls are created in one transaction per campaign and returned by id, in the order
    they should be dialled, for the caller to hand to the dialer once committed. Each
    committed call counts in ``callcenter_dispatch_calls_created_total`` and its contact's
    wait since it became due in ``callcenter_dispatch_lag_seconds``.
    """
    now = now or timezone.now()
    result = DispatchResult(created=[])
    campaigns = list(
        Campaign.objects.running()
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .select_related("partner", "template__partner")
        .order_by("pk")
    )
    held = backing_off([campaign.pk for campaign in campaigns])
    campaigns = [
        campaign
        for campaign in campaigns
        if campaign.pk not in held and not _paused_beyond_limits(campaign)
    ]
    if not campaigns:
        return result
    rooms, partner_rooms = _rooms(campaigns)
    capacity = settings.TWILIO_MAX_CPS * DISPATCH_INTERVAL_SECONDS
    account = take_tokens(
        bucket="account",
        rate=settings.TWILIO_MAX_CPS,
        capacity=max(1.0, capacity),
        wanted=_wanted(campaigns, rooms, partner_rooms),
    )
    offset = int(now.timestamp() // DISPATCH_INTERVAL_SECONDS)
    for campaign, share in _fair_shares(campaigns, rooms, partner_rooms, account, offset):
        granted = share
        for bucket, rate in (
            (f"partner-{campaign.partner_id}", float(campaign.partner.calls_per_second_cap)),
            (f"campaign-{campaign.pk}", float(campaign.effective_calls_per_second)),
        ):
            granted = take_tokens(
                bucket=bucket,
                rate=rate,
                capacity=max(1.0, rate * DISPATCH_INTERVAL_SECONDS),
                wanted=granted,
            )
        if granted:
            _dispatch_campaign(campaign=campaign, slots=granted, now=now, result=result)
    return result


def _paused_beyond_limits(campaign: Campaign) -> bool:
    """Pause ``campaign`` when its partner's limits no longer allow its numbers or profile
    (staff lowered them after it was saved); True when it was paused."""
    problems = limits.dial_problems(campaign=campaign)
    if not problems:
        return False
    try:
        pause_campaign(campaign=campaign, reason=truncate(" ".join(problems)))
    except CampaignStateError:
        pass  # it moved meanwhile: either way it is not dialled on this tick
    logger.warning("campaign %s paused: beyond its partner's limits: %s", campaign.pk, problems)
    return True


def _rooms(campaigns: list[Campaign]) -> tuple[dict[int, int], dict[int, int]]:
    """Free slots under each campaign's concurrency limit (clamped to its partner's cap),
    and under each partner's cap on its calls at once across its campaigns."""
    live = dict(
        Call.objects.live()
        .filter(campaign__in=campaigns)
        .values("campaign")
        .annotate(count=Count("pk"))
        .values_list("campaign", "count")
    )
    partners = {c.partner_id: c.partner for c in campaigns}
    partner_live = dict(
        Call.objects.live()
        .filter(campaign__partner__in=partners)
        .values("campaign__partner")
        .annotate(count=Count("pk"))
        .values_list("campaign__partner", "count")
    )
    rooms = {c.pk: max(0, c.effective_max_concurrent_calls - live.get(c.pk, 0)) for c in campaigns}
    partner_rooms = {
        pk: max(0, partner.max_concurrent_calls_cap - partner_live.get(pk, 0))
        for pk, partner in partners.items()
    }
    return rooms, partner_rooms


def _wanted(campaigns: list[Campaign], rooms: dict[int, int], partner_rooms: dict[int, int]) -> int:
    """The account tokens worth asking for: the campaigns' rooms, each partner's within its
    own room (tokens a full partner could not use are left to the others)."""
    by_partner: defaultdict[int, int] = defaultdict(int)
    for campaign in campaigns:
        by_partner[campaign.partner_id] += rooms[campaign.pk]
    return sum(min(room, partner_rooms[pk]) for pk, room in by_partner.items())


def _fair_shares(
    campaigns: list[Campaign],
    rooms: dict[int, int],
    partner_rooms: dict[int, int],
    tokens: int,
    offset: int,
) -> list[tuple[Campaign, int]]:
    """``tokens`` dealt one at a time round-robin to campaigns with room (theirs and their
    partner's), starting at ``offset`` so that no campaign is always first."""
    order = campaigns[offset % len(campaigns) :] + campaigns[: offset % len(campaigns)]
    shares = dict.fromkeys((c.pk for c in order), 0)
    partner_rooms = dict(partner_rooms)
    while tokens > 0:
        dealt = False
        for campaign in order:
            if (
                tokens
                and shares[campaign.pk] < rooms[campaign.pk]
                and partner_rooms[campaign.partner_id] > 0
            ):
                shares[campaign.pk] += 1
                partner_rooms[campaign.partner_id] -= 1
                tokens -= 1
                dealt = True
        if not dealt:
            break
    return [(c, shares[c.pk]) for c in order if shares[c.pk]]


def _dispatch_campaign(
    *, campaign: Campaign, slots: int, now: datetime.datetime, result: DispatchResult
) -> None:
    with transaction.atomic():
        # One dispatcher at a time per partner and campaign, their rooms counted again once
        # it holds them: two dispatchers counting at once would each fill them. The
        # partner's lock (taken first, by all) leaves its key alone, so that its other
        # campaigns can still be written meanwhile.
        caps = list(
            Partner.objects.select_for_update(no_key=True)
            .filter(pk=campaign.partner_id)
            .values_list("max_concurrent_calls_cap", flat=True)
        )
        if not caps or not list(
            Campaign.objects.select_for_update().filter(pk=campaign.pk).values("pk")
        ):
            return  # deleted meanwhile
        live = Call.objects.live().filter(campaign=campaign).count()
        partner_live = Call.objects.live().filter(campaign__partner_id=campaign.partner_id).count()
        slots = min(
            slots,
            campaign.effective_max_concurrent_calls - live,
            caps[0] - partner_live,
        )
        if slots <= 0:
            return
        candidates = list(
            campaign.contacts.due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")[
                : slots * CANDIDATES_PER_SLOT
            ]
        )
        if not candidates:
            return
        for contact in candidates:
            contact.campaign = campaign  # already loaded, with its template and partner
        facts = _facts(campaign=campaign, contacts=candidates, now=now)
        calls: list[Call] = []
        lags: list[float] = []
        selected: list[Eligibility] = []  # the verdict of each call's contact, in order
        skipped: list[audit.Event] = []
        # Contacts that end up alike (from the same state) are written with one UPDATE
        # per kind of change: a bulk_update of thousands of rows costs far more than the
        # dispatching itself.
        changes: defaultdict[tuple[str, PutOff], list[int]] = defaultdict(list)
        for contact in candidates:
            if len(calls) == slots:
                break
            verdict = evaluate(
                contact=contact,
                campaign=campaign,
                now=now,
                history=sorted(facts.history[contact.phone]),
                blocked_by_dnc=contact.phone in facts.blocked,
                live_call=contact.pk in facts.live,
                listings=facts.listings.get(contact.pk, ()),
                erased=contact.erased_at is not None or contact.phone in facts.erased,
            )
            if ReasonCode.LIVE_CALL in verdict.codes:
                continue  # its call is still going on: it is not due, leave it alone
            if verdict.dialable:
                calls.append(
                    Call(
                        campaign=campaign,
                        contact=contact,
                        attempt=facts.last_attempt.get(contact.pk, 0) + 1,
                        from_number=campaign.effective_caller_number,
                        to_number=contact.phone,
                    )
                )
                selected.append(verdict)
                lags.append(max(0.0, (now - _due_since(contact, campaign)).total_seconds()))
                # Another contact with the same number in this batch counts this call.
                facts.history[contact.phone].append(now)
                continue
            move = put_off(verdict=verdict, waiting=contact.state)
            if move.closed:
                result.closed += 1
            else:
                result.deferred += 1
            changes[(contact.state, move)].append(contact.pk)
            skipped.append(
                decisions.skipped(
                    contact=contact,
                    campaign=campaign,
                    verdict=verdict,
                    stage="dispatch",
                    state=move.state,
                )
            )
        Call.objects.bulk_create(calls)
        mark_contacts_calling(contact_ids=[call.contact_id for call in calls], now=now)
        for (origin, move), ids in changes.items():
            put_off_contacts(contact_ids=ids, origin=origin, put_off=move, now=now)
        # Last in the transaction: the audit chain's head stays locked until it commits.
        audit.record_many(
            [
                *(
                    decisions.selected(call=call, campaign=campaign, verdict=verdict)
                    for call, verdict in zip(calls, selected, strict=True)
                ),
                *skipped,
            ]
        )
        result.created.extend(call.pk for call in calls)
        transaction.on_commit(functools.partial(_count_dispatched, lags))


def _due_since(contact: Contact, campaign: Campaign) -> datetime.datetime:
    """When ``contact`` became due: its set time, else (a first call) when it was added
    or its campaign last changed state (started or resumed), whichever came later."""
    if contact.next_attempt_at is not None:
        return contact.next_attempt_at
    if campaign.state_changed_at is None:
        return contact.created_at
    return max(contact.created_at, campaign.state_changed_at)


def _count_dispatched(lags: list[float]) -> None:
    DISPATCH_CALLS_CREATED.inc(len(lags))
    for lag in lags:
        DISPATCH_LAG.observe(lag)


@dataclass
class _Facts:
    history: defaultdict[str, list[datetime.datetime]]
    blocked: set[str]
    erased: set[str]  # numbers erased at their owner's request (by their keyed hash)
    live: set[int]
    last_attempt: dict[int, int]
    listings: dict[int, list[Listing]]


def _facts(*, campaign: Campaign, contacts: list[Contact], now: datetime.datetime) -> _Facts:
    """What eligibility needs about a batch of contacts, in four queries for all of them."""
    phones = [contact.phone for contact in contacts]
    hours = max(history_hours(contact=contact, campaign=campaign) for contact in contacts)
    history: defaultdict[str, list[datetime.datetime]] = defaultdict(list)
    for phone, created_at in (
        Call.objects.placed()
        .filter(
            campaign__partner_id=campaign.partner_id,
            to_number__in=phones,
            created_at__gt=now - datetime.timedelta(hours=hours),
            created_at__lte=now,
        )
        .values_list("to_number", "created_at")
    ):
        history[phone].append(created_at)
    # The do-not-call lists and the erased numbers, in one query; the partner's own and
    # global entries alike forbid the number.
    listed, erased_pairs = do_not_call_and_erased(partner_ids=[campaign.partner_id], phones=phones)
    blocked = {phone for _partner, phone in listed}
    erased = {phone for _partner, phone in erased_pairs}
    live = set(Call.objects.live().filter(contact__in=contacts).values_list("contact", flat=True))
    last_attempt = dict(
        Call.objects.filter(contact__in=contacts)
        .values("contact")
        .annotate(last=Max("attempt"))
        .values_list("contact", "last")
    )
    return _Facts(
        history=history,
        blocked=blocked,
        erased=erased,
        live=live,
        last_attempt=last_attempt,
        # National suppression lists (US-9, ES-5), for marketing campaigns only.
        listings=listings(contacts=contacts),
    )
