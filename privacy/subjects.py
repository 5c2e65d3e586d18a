"""Finding what is held about a phone number: its contacts, their calls, the events and
webhook deliveries that name it, its do-not-call entries and the clips played to it; what
the export reads and the erasure removes (for one partner, or every partner: None)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from audit.keys import subject_hash
from calls.models import CallClip, CallEvent, Turn
from campaigns.models import Contact, DoNotCall, Partner, WebhookDelivery


@dataclass(frozen=True)
class Subject:
    """A phone number and the ways it may be written down: E.164 and national digits."""

    phone: str
    national: str

    @classmethod
    def of(cls, phone: str) -> Subject:
        parsed = phonenumbers.parse(phone)
        return cls(phone=phone, national=str(parsed.national_number))

    @property
    def digest(self) -> str:
        return subject_hash(self.phone)


def subject_contacts(*, subject: Subject, partner: Partner | None) -> QuerySet[Contact]:
    """The contacts with the number (not yet erased), of ``partner`` or of every partner."""
    contacts = Contact.objects.filter(phone=subject.phone, erased_at__isnull=True)
    return contacts if partner is None else contacts.filter(campaign__partner=partner)


def mentions(field: str, values: Iterable[str]) -> Q:
    """Rows whose ``field`` (text, or JSON cast to text) contains any of ``values``."""
    query = Q()
    for value in values:
        query |= Q(**{f"{field}__icontains": value})
    return query


def as_text(queryset: QuerySet[Any], field: str) -> QuerySet[Any]:
    return queryset.alias(**{f"{field}_text": Cast(field, TextField())})


def call_events(subject: Subject, partner: Partner | None, call_ids: list[int]) -> QuerySet[Any]:
    """The calls' provider events, and (for every partner) events matched to no call that
    name the number (a stray or an unknown caller's)."""
    events = Q(call_id__in=call_ids)
    if partner is None:
        events |= Q(call__isnull=True) & mentions("payload_text", [subject.phone])
    return as_text(CallEvent.objects.all(), "payload").filter(events)


def deliveries(subject: Subject, partner: Partner | None) -> QuerySet[Any]:
    """Webhook deliveries whose body names the number (every call and contact event)."""
    deliveries = as_text(WebhookDelivery.objects.all(), "payload").filter(
        mentions("payload_text", [subject.phone])
    )
    return deliveries if partner is None else deliveries.filter(endpoint__partner=partner)


def do_not_call(subject: Subject, partner: Partner | None) -> QuerySet[DoNotCall]:
    """The do-not-call entries of the number: the erased number's hash stands for them.
    A partner's erasure leaves the global list (staff's) as it is."""
    entries = DoNotCall.objects.filter(phone=subject.phone)
    return entries if partner is None else entries.filter(partner=partner)


def played_clip_ids(call_ids: list[int]) -> set[int]:
    """The speech clips played on the calls: their CallClip rows, and the turns' own list
    (a call still going on has only the latter)."""
    played = set(CallClip.objects.filter(call_id__in=call_ids).values_list("clip_id", flat=True))
    for clip_ids in Turn.objects.filter(call_id__in=call_ids).values_list("clips", flat=True):
        played.update(clip_id for clip_id in clip_ids or [] if isinstance(clip_id, int))
    return played
