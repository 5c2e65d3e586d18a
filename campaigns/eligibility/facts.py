"""The facts ``evaluate`` needs, loaded from the database: for one contact, or for many
in three queries (and, for marketing campaigns that require national lists, three more)."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Sequence

from django.db.models import Q, Value
from django.utils import timezone

from audit.keys import subject_hash
from campaigns.eligibility.verdict import Eligibility, EligibilityFacts, evaluate, history_hours
from campaigns.models import Contact, DoNotCall, ErasedNumber
from campaigns.suppression.lookups import listings


def load_eligibility_facts(
    *, contact: Contact, now: datetime.datetime, exclude_call_id: int | None = None
) -> EligibilityFacts:
    """The facts ``evaluate`` needs about ``contact`` at ``now``, in three queries.

    ``exclude_call_id``: a call that is neither history nor a live call of its own, for the
    re-check right before dialling the call the dispatcher already created.
    """
    # calls builds on campaigns (dependencies run one way), so the import waits until here.
    from calls.models import LIVE_STATUSES, Call

    campaign = contact.campaign
    calls = Call.objects.exclude(pk=exclude_call_id) if exclude_call_id else Call.objects.all()
    since = now - datetime.timedelta(hours=history_hours(contact=contact, campaign=campaign))
    history = (
        calls.placed()
        .filter(
            campaign__partner_id=campaign.partner_id,
            to_number=contact.phone,
            created_at__gt=since,
            created_at__lte=now,
        )
        .values_list("created_at", flat=True)
    )
    lists = _lists_holding(contact)
    return {
        "history": sorted(history),
        "blocked_by_dnc": _DO_NOT_CALL in lists,
        "live_call": calls.filter(contact=contact, status__in=LIVE_STATUSES).exists(),
        "listings": listings(contacts=[contact]).get(contact.pk, []),
        "erased": contact.erased_at is not None or _ERASED in lists,
    }


_DO_NOT_CALL, _ERASED = "do_not_call", "erased"


def _lists_holding(contact: Contact) -> set[str]:
    """Which lists forbid calling ``contact``'s number for its partner, in one query: a
    do-not-call list, the numbers erased at their owners' request (by keyed hash)."""
    partner_id = contact.campaign.partner_id
    do_not_call = (
        DoNotCall.objects.filter(Q(partner_id=partner_id) | Q(partner__isnull=True))
        .filter(phone=contact.phone)
        .annotate(list=Value(_DO_NOT_CALL))
        .values_list("list")
    )
    erased = (
        ErasedNumber.objects.blocking(partner_id=partner_id, phone=contact.phone)
        .annotate(list=Value(_ERASED))
        .values_list("list")
    )
    return {row[0] for row in do_not_call.order_by().union(erased.order_by(), all=True)}


def eligibility_for(
    *,
    contact: Contact,
    now: datetime.datetime | None = None,
    exclude_call_id: int | None = None,
) -> Eligibility:
    """Load the facts about ``contact`` and evaluate it at ``now`` (default: the present)."""
    now = now or timezone.now()
    facts = load_eligibility_facts(contact=contact, now=now, exclude_call_id=exclude_call_id)
    return evaluate(contact=contact, campaign=contact.campaign, now=now, **facts)


def eligibilities(
    *, contacts: Sequence[Contact], now: datetime.datetime | None = None
) -> dict[int, Eligibility]:
    """The verdict on each of ``contacts`` (of any campaigns and partners, each with its
    campaign loaded as ``with_campaign`` loads it) at ``now``, by contact id: the facts
    ``eligibility_for`` loads for one, loaded for all of them in three queries."""
    from calls.models import LIVE_STATUSES, Call  # as in load_eligibility_facts

    now = now or timezone.now()
    if not contacts:
        return {}
    phones = {contact.phone for contact in contacts}
    partners = {contact.campaign.partner_id for contact in contacts}
    hours = max(history_hours(contact=contact, campaign=contact.campaign) for contact in contacts)
    history: dict[tuple[int, str], list[datetime.datetime]] = {}
    for partner_id, phone, created_at in (
        Call.objects.placed()
        .filter(
            campaign__partner_id__in=partners,
            to_number__in=phones,
            created_at__gt=now - datetime.timedelta(hours=hours),
            created_at__lte=now,
        )
        .order_by()
        .values_list("campaign__partner_id", "to_number", "created_at")
    ):
        history.setdefault((partner_id, phone), []).append(created_at)
    blocked, erased = do_not_call_and_erased(partner_ids=partners, phones=phones)
    live = set(
        Call.objects.filter(contact__in=contacts, status__in=LIVE_STATUSES)
        .order_by()
        .values_list("contact_id", flat=True)
    )
    listed = listings(contacts=contacts)
    verdicts = {}
    for contact in contacts:
        partner_id = contact.campaign.partner_id
        verdicts[contact.pk] = evaluate(
            contact=contact,
            campaign=contact.campaign,
            now=now,
            history=sorted(history.get((partner_id, contact.phone), [])),
            blocked_by_dnc=(partner_id, contact.phone) in blocked
            or (None, contact.phone) in blocked,
            live_call=contact.pk in live,
            listings=listed.get(contact.pk, []),
            erased=contact.erased_at is not None
            or (partner_id, contact.phone) in erased
            or (None, contact.phone) in erased,
        )
    return verdicts


def do_not_call_and_erased(
    *, partner_ids: Collection[int], phones: Collection[str]
) -> tuple[set[tuple[int | None, str]], set[tuple[int | None, str]]]:
    """Which of ``phones`` the partners of ``partner_ids`` may not call, in one query: the
    (partner id, number) pairs on a do-not-call list, and those erased at the person's
    request (matched by keyed hash); a global entry's partner id is None."""
    digests = {subject_hash(phone): phone for phone in phones if phone}
    scope = Q(partner_id__in=partner_ids) | Q(partner__isnull=True)
    blocked: set[tuple[int | None, str]] = set()
    erased: set[tuple[int | None, str]] = set()
    for partner_id, value, kind in (
        DoNotCall.objects.filter(scope, phone__in=phones)
        .annotate(list=Value(_DO_NOT_CALL))
        .order_by()
        .values_list("partner_id", "phone", "list")
        .union(
            ErasedNumber.objects.filter(scope, digest__in=digests)
            .annotate(list=Value(_ERASED))
            .order_by()
            .values_list("partner_id", "digest", "list"),
            all=True,
        )
    ):
        if kind == _ERASED:
            erased.add((partner_id, digests[value]))
        else:
            blocked.add((partner_id, value))
    return blocked, erased
