"""Writing to the audit trail, and checking that nobody rewrote it.

``record`` (or ``record_many``) inside the transaction that makes the decision: the entry
commits or rolls back with it. The writer holds the chain's head until its transaction
ends, so keep what follows a record short (no network calls).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.request import Request

from audit.keys import entry_hash, subject_hash
from audit.models import Action, ActorType, AuditEntry, AuditHead
from callcenter.access import ApiKeyUser
from callcenter.logins import client_address

__all__ = [
    "SYSTEM",
    "Action",
    "Actor",
    "Event",
    "Problem",
    "record",
    "record_many",
    "subject_hash",
    "verify",
]


@dataclass(frozen=True)
class Actor:
    """Who made a decision or took an action, and from where."""

    type: str = ActorType.SYSTEM
    id: str = ""
    name: str = ""
    ip: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest | Request) -> Actor:
        """The staff user, partner user or partner API key behind ``request`` (Django's, or
        DRF's, whose user is the API's authenticated one), with the client's address as
        the trusted proxies saw it."""
        user = getattr(request, "user", None)
        ip = client_address(getattr(request, "_request", request))
        if user is None or not user.is_authenticated:
            return cls(ActorType.SYSTEM, ip=ip)
        if isinstance(user, ApiKeyUser):
            key = user.api_key
            return cls(ActorType.PARTNER, f"key:{key.prefix}", f"{user.partner} ({key.prefix})", ip)
        membership = getattr(user, "partner_membership", None)
        kind = (
            ActorType.PARTNER if membership is not None and not user.is_staff else ActorType.STAFF
        )
        return cls(kind, f"user:{user.pk}", user.get_username(), ip)


SYSTEM = Actor()
CALLEE = Actor(ActorType.CALLEE)


@dataclass(frozen=True)
class Event:
    """One entry to write (``record_many``); the arguments of ``record``."""

    action: str
    partner_id: int | None
    subject_phone: str = ""
    object_type: str = ""
    object_id: str | int = ""
    actor: Actor = SYSTEM
    details: dict[str, Any] = field(default_factory=dict)
    rules_version: str = ""


def record(
    action: str,
    *,
    partner_id: int | None,
    subject_phone: str = "",
    object_type: str = "",
    object_id: str | int = "",
    actor: Actor = SYSTEM,
    details: dict[str, Any] | None = None,
    rules_version: str = "",
) -> AuditEntry:
    """Append one entry. ``subject_phone`` (an E.164 number) is stored only as its keyed
    hash; ``details`` must name no person (ids, codes, reasons and versions only)."""
    event = Event(
        action,
        partner_id,
        subject_phone,
        object_type,
        object_id,
        actor,
        details or {},
        rules_version,
    )
    return record_many([event])[0]


def record_many(events: Sequence[Event]) -> list[AuditEntry]:
    """Append ``events`` in order, under one lock of the chain's head, in one insert."""
    if not events:
        return []
    with transaction.atomic():
        head = _locked_head()
        at = timezone.now()
        seq, prev = head.seq, head.hash
        entries = []
        for event in events:
            seq += 1
            entry = AuditEntry(
                seq=seq,
                at=at,
                action=str(event.action),
                partner_id=event.partner_id,
                subject=subject_hash(event.subject_phone) if event.subject_phone else "",
                object_type=event.object_type,
                object_id=str(event.object_id),
                actor_type=str(event.actor.type),
                actor_id=event.actor.id[:64],
                actor_name=event.actor.name[:200],
                ip=event.actor.ip,
                details=event.details,
                rules_version=event.rules_version[:120],
                prev_hash=prev,
                hash="",
            )
            entry.hash = prev = entry_hash(prev_hash=prev, fields=chained_fields(entry))
            entries.append(entry)
        AuditEntry.objects.bulk_create(entries)
        AuditHead.objects.filter(pk=head.pk).update(seq=seq, hash=prev)
    return entries


def _locked_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        # The migration creates the row; a database flushed by tests may lack it.
        AuditHead.objects.get_or_create(pk=1)
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def chained_fields(entry: AuditEntry) -> dict[str, Any]:
    """What an entry's hash covers: every field but its own hash (and the row id)."""
    return {
        "seq": entry.seq,
        "at": _instant(entry.at),
        "action": entry.action,
        "partner_id": entry.partner_id,
        "subject": entry.subject,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "ip": entry.ip,
        "details": entry.details,
        "rules_version": entry.rules_version,
        "prev_hash": entry.prev_hash,
    }


def _instant(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Problem:
    """Where the chain breaks: the entry (by ``seq``) and what is wrong with it."""

    seq: int
    message: str


def verify(*, batch: int = 5000) -> tuple[int, list[Problem]]:
    """Walk the whole chain in order: how many entries it holds, and every place it breaks
    (an entry whose fields no longer match its hash, a hash not chained to the one before,
    a number missing, a head that does not name the last entry)."""
    problems: list[Problem] = []
    count, expected_seq, prev = 0, 1, ""
    for entry in _in_order(batch):
        count += 1
        if entry.seq != expected_seq:
            problems.append(
                Problem(
                    entry.seq,
                    _("entries %(first)s to %(last)s are missing")
                    % {"first": expected_seq, "last": entry.seq - 1},
                )
            )
        if entry.prev_hash != prev:
            problems.append(Problem(entry.seq, _("not chained to the entry before it")))
        if entry_hash(prev_hash=entry.prev_hash, fields=chained_fields(entry)) != entry.hash:
            problems.append(Problem(entry.seq, _("its fields do not match its hash")))
        expected_seq, prev = entry.seq + 1, entry.hash
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.seq, head.hash) != (expected_seq - 1, prev):
        problems.append(
            Problem(
                head.seq,
                _("the chain's head names entry %(head)s, but the last entry is %(last)s")
                % {"head": head.seq, "last": expected_seq - 1},
            )
        )
    return count, problems


def _in_order(batch: int) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = list(AuditEntry.objects.filter(seq__gt=after).order_by("seq")[:batch])
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].seq
