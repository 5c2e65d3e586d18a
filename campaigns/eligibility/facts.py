"""The facts ``evaluate`` needs, loaded from the database: for one contact, or for many
in three queries."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.db.models import Q
from django.utils import timezone

from audit.keys import subject_hash
from campaigns.eligibility.verdict import Eligibility, EligibilityFacts, evaluate, history_hours
from campaigns.models import Contact, DoNotCall, ErasedNumber


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
    return {
        "history": sorted(history),
        "blocked_by_dnc": DoNotCall.objects.blocking(
            partner=campaign.partner, phone=contact.phone
        ).exists(),
        "live_call": calls.filter(contact=contact, status__in=LIVE_STATUSES).exists(),
        "erased": _erased(contact),
    }


def _erased(contact: Contact) -> bool:
    """Whether ``contact`` or its number (for its partner) was erased at the person's request."""
    if contact.erased_at is not None:
        return True
    return ErasedNumber.objects.blocking(
        partner_id=contact.campaign.partner_id, phone=contact.phone
    ).exists()


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
    ``eligibility_for`` loads for one, loaded for all of them in four queries."""
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
    # A global entry has no partner: (None, phone).
    blocked: set[tuple[int | None, str]] = set(
        DoNotCall.objects.filter(
            Q(partner_id__in=partners) | Q(partner__isnull=True), phone__in=phones
        )
        .order_by()
        .values_list("partner_id", "phone")
    )
    live = set(
        Call.objects.filter(contact__in=contacts, status__in=LIVE_STATUSES)
        .order_by()
        .values_list("contact_id", flat=True)
    )
    erased = _erased_numbers(contacts, partners)
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
            erased=contact.erased_at is not None
            or (partner_id, subject_hash(contact.phone)) in erased
            or (None, subject_hash(contact.phone)) in erased,
        )
    return verdicts


def _erased_numbers(contacts: Sequence[Contact], partners: set[int]) -> set[tuple[int | None, str]]:
    """The erased numbers among ``contacts``' (by partner, None: every partner, and hash)."""
    digests = {subject_hash(contact.phone) for contact in contacts if contact.phone}
    return set(
        ErasedNumber.objects.filter(
            Q(partner_id__in=partners) | Q(partner__isnull=True), digest__in=digests
        )
        .order_by()
        .values_list("partner_id", "digest")
    )
