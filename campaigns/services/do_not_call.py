"""Writes on the do-not-call lists."""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from audit import services as audit
from campaigns.models import DoNotCall, Partner
from campaigns.phones import normalize_phone
from campaigns.services.errors import DoNotCallProtected


def add_do_not_call(
    *,
    phone: str,
    partner: Partner | None,
    source: str,
    reason: str = "",
    by: User | None = None,
    region: str | None = None,
) -> tuple[DoNotCall, bool]:
    """Forbid calls to ``phone`` by ``partner`` (None: by every partner). Idempotent:
    returns the entry and whether it was created."""
    e164 = normalize_phone(phone, region=region or settings.DEFAULT_PHONE_REGION)
    existing = DoNotCall.objects.filter(partner=partner, phone=e164).first()
    if existing is not None:
        return existing, False
    entry = DoNotCall(partner=partner, phone=e164, source=source, reason=reason, created_by=by)
    # Uniqueness is left to the database, which also settles concurrent adds.
    entry.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        return DoNotCall.objects.get(partner=partner, phone=e164), False
    return entry, True


@dataclasses.dataclass(frozen=True)
class NumberError:
    """One number of a list that could not be added: its place, what was sent and why."""

    index: int
    value: str
    message: str


@dataclasses.dataclass(frozen=True)
class DoNotCallBatch:
    """What ``add_do_not_call_numbers`` did: entries created, numbers already listed (also
    a number repeated in the list), and the numbers refused."""

    created: int
    existing: int
    errors: list[NumberError]


def add_do_not_call_numbers(
    *,
    phones: list[str],
    partner: Partner | None,
    source: str,
    reason: str = "",
    by: User | None = None,
    region: str | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> DoNotCallBatch:
    """``add_do_not_call`` for a list of numbers, in a few queries whatever its length.
    Numbers that cannot be read are reported by index; the others are added, each with an
    ``object.created`` audit entry naming ``actor`` (the number as the entry's subject)."""
    region = region or settings.DEFAULT_PHONE_REGION
    errors: list[NumberError] = []
    numbers: dict[str, None] = {}  # ordered set of the E.164 numbers, repeats once
    repeats = 0
    for index, raw in enumerate(phones):
        try:
            e164 = normalize_phone(raw, region=region)
        except ValidationError as exc:
            errors.append(NumberError(index=index, value=raw, message=exc.messages[0]))
            continue
        if e164 in numbers:
            repeats += 1
        numbers[e164] = None
    listed = set(
        DoNotCall.objects.filter(partner=partner, phone__in=list(numbers)).values_list(
            "phone", flat=True
        )
    )
    entries = [
        DoNotCall(partner=partner, phone=phone, source=source, reason=reason, created_by=by)
        for phone in numbers
        if phone not in listed
    ]
    if entries:
        # One check covers them all: they differ only by their (normalised) numbers.
        entries[0].full_clean(validate_constraints=False)
    # A concurrent add of the same number wins; the database settles it without an error
    # (and the count then includes it).
    with transaction.atomic():
        DoNotCall.objects.bulk_create(entries, ignore_conflicts=True)
        audit.record_many(
            [
                audit.Event(
                    audit.Action.OBJECT_CREATED,
                    partner.pk if partner else None,
                    subject_phone=entry.phone,
                    object_type="campaigns.donotcall",
                    actor=actor,
                    details={"source": source, "bulk": True},
                )
                for entry in entries
            ]
        )
    return DoNotCallBatch(created=len(entries), existing=len(listed) + repeats, errors=errors)


def remove_do_not_call(*, entry: DoNotCall, by_staff: bool) -> None:
    """Allow calls to the entry's number again (for its partner, or for all if global).

    An opt-out is the callee's own request, which the partner must honour (US-7):
    only staff may remove one (a number that changed hands, say); DoNotCallProtected else.
    """
    if entry.source == DoNotCall.Source.OPT_OUT and not by_staff:
        raise DoNotCallProtected(
            _("%(phone)s asked not to be called during a call; only staff can remove this entry.")
            % {"phone": entry.phone}
        )
    entry.delete()
