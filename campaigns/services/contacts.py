"""Writes on contacts: add, change, delete, and every move of a contact's state.

A contact's state moves only through the services below, each a compare-and-set on the
state it expects (the row count checked), each refusing what ``Contact.TRANSITIONS``
does not allow (ContactStateError).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from callcenter.text import truncate
from campaigns.eligibility import Eligibility, ReasonCode
from campaigns.models import ERASED_NUMBER_MESSAGE, Campaign, Contact, ErasedNumber
from campaigns.phones import normalize_phone, time_zones_for
from campaigns.services.campaigns import FINAL_STATES
from campaigns.services.errors import ContactStateError

# Contacts that still wait for a call.
WAITING_STATES = (Contact.State.PENDING, Contact.State.RETRY)


def update_contact(*, contact: Contact, **changes: Any) -> Contact:
    """Change a contact's variables, time zone or external id while its campaign is not
    over and no call to it is going on. Raises ContactStateError or ValidationError."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().select_related("campaign").get(pk=contact.pk)
        problems = _contact_change_problems(locked)
        if problems:
            raise ContactStateError(*problems)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.full_clean()
        locked.save(update_fields=[*changes, "updated_at"])
    return locked


def delete_contact(*, contact: Contact) -> None:
    """Delete a contact that was never called (a called one keeps its calls' history: its
    campaign is cancelled or completed instead). Raises ContactStateError."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().select_related("campaign").get(pk=contact.pk)
        problems = _contact_change_problems(locked)
        if locked.attempts or locked.calls.exists():
            problems.append(_("The contact was already called; its calls are kept."))
        if problems:
            raise ContactStateError(*problems)
        locked.delete()


def _contact_change_problems(contact: Contact) -> list[str]:
    problems = []
    if contact.campaign.state in FINAL_STATES:
        problems.append(
            _("The campaign is over (%(state)s).")
            % {"state": contact.campaign.get_state_display().lower()}
        )
    if contact.state == Contact.State.CALLING:
        problems.append(_("A call to the contact is going on."))
    return problems


def add_contact(
    *,
    campaign: Campaign,
    phone: str,
    time_zone: str = "",
    variables: dict[str, Any] | None = None,
    external_id: str = "",
) -> tuple[Contact, bool]:
    """Add a contact to ``campaign``, or merge into the one it duplicates.

    A contact with the same external id, or else the same normalised phone, is the same
    person: its variables are merged and no second contact is made. An external id of a
    contact with another phone is refused (as an import's row is): merging would drop the
    phone given. Returns the contact and whether it was created. Invalid input raises
    ValidationError naming the field.
    """
    e164 = normalize_phone(phone, region=campaign.phone_region)
    _refuse_erased(campaign=campaign, phone=e164)
    external_id = external_id.strip()
    if not time_zone:
        # One zone for the number: store it; several: eligibility checks all of them.
        zones = time_zones_for(e164)
        time_zone = zones[0] if len(zones) == 1 else ""
    try:
        with transaction.atomic():
            return _merge_or_create_contact(
                campaign=campaign,
                phone=e164,
                time_zone=time_zone,
                variables=variables or {},
                external_id=external_id,
            )
    except IntegrityError:
        # A concurrent add of the same person won the insert: merge into theirs.
        with transaction.atomic():
            return _merge_or_create_contact(
                campaign=campaign,
                phone=e164,
                time_zone=time_zone,
                variables=variables or {},
                external_id=external_id,
            )


def _refuse_erased(*, campaign: Campaign, phone: str) -> None:
    """A number erased at its owner's request (privacy.erasure) is never added again."""
    if ErasedNumber.objects.blocking(partner_id=campaign.partner_id, phone=phone).exists():
        raise ValidationError({"phone": ValidationError(ERASED_NUMBER_MESSAGE, code="erased")})


def _merge_or_create_contact(
    *, campaign: Campaign, phone: str, time_zone: str, variables: dict[str, Any], external_id: str
) -> tuple[Contact, bool]:
    contacts = campaign.contacts.select_for_update()
    existing = contacts.filter(external_id=external_id).first() if external_id else None
    if existing is not None and existing.phone != phone:
        raise ValidationError(
            {
                "phone": _(
                    "The external id %(external_id)s belongs to the contact with phone "
                    "%(phone)s, not to this one. Correct the phone or the external id."
                )
                % {"external_id": external_id, "phone": existing.phone}
            },
            code="external_id_taken",
        )
    if existing is None:
        existing = contacts.filter(phone=phone).first()
    if existing is not None:
        existing.variables = {**existing.variables, **variables}
        existing.full_clean()
        existing.save(update_fields=["variables", "updated_at"])
        return existing, False
    contact = Contact(
        campaign=campaign,
        phone=phone,
        time_zone=time_zone,
        variables=variables,
        external_id=external_id,
    )
    contact.full_clean()
    contact.save()
    return contact, True


# --- State moves ----------------------------------------------------------------------------

# What a contact becomes when a reason that time will not clear keeps it from calls
# (failed, for any reason not listed).
_CLOSING_STATES = {ReasonCode.ATTEMPTS_EXHAUSTED: Contact.State.EXHAUSTED}
# Eligibility reasons after which a released contact waits rather than being put off by
# the verdict: about the campaign rather than the contact, or a call going on (the
# contact rang us meanwhile, calls.inbound), after which the dispatcher takes it up again.
RELEASE_WAITING_CODES = frozenset(
    {ReasonCode.CAMPAIGN_NOT_RUNNING, ReasonCode.CAMPAIGN_ENDED, ReasonCode.LIVE_CALL}
)


@dataclasses.dataclass(frozen=True)
class PutOff:
    """Where a contact that may not be called now goes: ``state`` (the one it waits in,
    until ``next_attempt_at``, or the one that closes it), and why."""

    state: str
    next_attempt_at: datetime.datetime | None
    reason: str

    @property
    def closed(self) -> bool:
        return self.state not in WAITING_STATES


def put_off(*, verdict: Eligibility, waiting: str) -> PutOff:
    """Where ``verdict`` sends a contact that may not be called now: ``waiting`` until
    ``next_possible_at`` when time will clear it; else closed (exhausted or failed)."""
    reason = truncate("; ".join(reason.message for reason in verdict.reasons))
    if verdict.next_possible_at is not None:
        return PutOff(state=waiting, next_attempt_at=verdict.next_possible_at, reason=reason)
    state = next(
        (_CLOSING_STATES[code] for code in verdict.codes if code in _CLOSING_STATES),
        Contact.State.FAILED,
    )
    return PutOff(state=state, next_attempt_at=None, reason=reason)


def mark_contacts_calling(*, contact_ids: Collection[int], now: datetime.datetime) -> None:
    """Claim the waiting contacts ``contact_ids`` for the calls just made for them, in one
    UPDATE: calling, one attempt more, no time set, no reason. The caller holds their rows;
    one that no longer waits refuses the whole batch (ContactStateError)."""
    ids = set(contact_ids)
    updated = Contact.objects.filter(pk__in=ids, state__in=_origins(Contact.State.CALLING)).update(
        state=Contact.State.CALLING,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
        state_reason="",
        updated_at=now,
    )
    if updated != len(ids):
        raise ContactStateError(
            _("%(missing)s of %(total)s contacts no longer wait for a call.")
            % {"missing": len(ids) - updated, "total": len(ids)}
        )


def put_off_contacts(
    *, contact_ids: Collection[int], origin: str, put_off: PutOff, now: datetime.datetime
) -> None:
    """Write one ``put_off`` on the contacts ``contact_ids``, all in state ``origin``, in
    one UPDATE. The caller holds their rows; one that moved on refuses the whole batch."""
    _check_move(origin, put_off.state)
    ids = set(contact_ids)
    updated = Contact.objects.filter(pk__in=ids, state=origin).update(
        state=put_off.state,
        next_attempt_at=put_off.next_attempt_at,
        state_reason=put_off.reason,
        updated_at=now,
    )
    if updated != len(ids):
        raise ContactStateError(
            _("%(missing)s of %(total)s contacts are no longer %(state)s.")
            % {
                "missing": len(ids) - updated,
                "total": len(ids),
                "state": Contact.State(origin).label,
            }
        )


def release_contact(
    *,
    contact_id: int,
    reason: str,
    verdict: Eligibility | None = None,
    due_at: datetime.datetime | None = None,
    now: datetime.datetime,
) -> bool:
    """Give back a calling contact whose call was never placed, its attempt uncounted.

    Without a verdict, or when the campaign itself is why (paused, over) or another call
    of the contact's is going on, it waits again (pending before any attempt, retry after
    one), from ``due_at`` when given. With a verdict about the contact, it is put off
    until the verdict clears, or closed with the reason. Runs in the caller's
    transaction; False when the contact was no longer calling (nothing is written: whoever
    moved it decided its state).
    """
    contact = Contact.objects.select_for_update().get(pk=contact_id)
    if contact.state != Contact.State.CALLING:
        return False
    attempts = max(0, contact.attempts - 1)
    waiting = Contact.State.PENDING if attempts == 0 else Contact.State.RETRY
    if verdict is not None and not set(verdict.codes) & RELEASE_WAITING_CODES:
        move = put_off(verdict=verdict, waiting=waiting)
    else:
        move = PutOff(state=waiting, next_attempt_at=due_at, reason=truncate(reason))
    if move.state == Contact.State.RETRY and move.next_attempt_at is None:
        move = dataclasses.replace(move, next_attempt_at=now)
    _check_move(Contact.State.CALLING, move.state)
    updated = Contact.objects.filter(pk=contact_id, state=Contact.State.CALLING).update(
        state=move.state,
        state_reason=move.reason,
        attempts=attempts,
        next_attempt_at=move.next_attempt_at,
        updated_at=now,
    )
    return bool(updated)


def finish_contact_attempt(
    *,
    contact: Contact,
    to: str,
    reason: str,
    next_attempt_at: datetime.datetime | None,
    inbound: bool = False,
    now: datetime.datetime,
) -> bool:
    """Move ``contact`` on after a call ended: to ``to`` (done, retry, exhausted, failed).

    After a call of ours it moves on from calling only; after the contact rang us
    (``inbound``), from any state the table lets it leave for ``to``: not from an opt-out.
    A compare-and-set: False when the contact was elsewhere (nothing is written then).
    ``contact`` gets the values written.
    """
    if inbound:
        origins = _origins(to)
    else:
        _check_move(Contact.State.CALLING, to)
        origins = [Contact.State.CALLING]
    updated = Contact.objects.filter(pk=contact.pk, state__in=origins).update(
        state=to, state_reason=truncate(reason), next_attempt_at=next_attempt_at, updated_at=now
    )
    if not updated:
        return False
    contact.state, contact.state_reason = to, truncate(reason)
    contact.next_attempt_at, contact.updated_at = next_attempt_at, now
    return True


def opt_out_contact(*, contact: Contact, reason: str, now: datetime.datetime) -> bool:
    """Close ``contact`` as opted out, whatever its state (an opt-out said again rewrites
    the reason). False when the contact is gone."""
    updated = Contact.objects.filter(
        pk=contact.pk, state__in=_origins(Contact.State.OPTED_OUT)
    ).update(
        state=Contact.State.OPTED_OUT,
        state_reason=truncate(reason),
        next_attempt_at=None,
        updated_at=now,
    )
    return bool(updated)


def schedule_contact_callback(
    *,
    contact_id: int,
    at: datetime.datetime,
    reason: str,
    unchanged_since: datetime.datetime,
    now: datetime.datetime,
) -> bool:
    """Reopen a done contact for the callback found after its call (in the transcript): a
    retry at ``at`` (now at the earliest). Only a contact still done and not written
    since ``unchanged_since`` moves; False otherwise (nothing is written)."""
    _check_move(Contact.State.DONE, Contact.State.RETRY)
    updated = Contact.objects.filter(
        pk=contact_id, state=Contact.State.DONE, updated_at__gte=unchanged_since
    ).update(
        state=Contact.State.RETRY,
        next_attempt_at=max(at, now),
        state_reason=truncate(reason),
        updated_at=now,
    )
    return bool(updated)


def _origins(to: str) -> list[str]:
    """The states a contact may leave for ``to``, as the compare-and-set's expectation."""
    origins = Contact.states_moving_to(to)
    if not origins:
        raise ContactStateError(
            _("No contact can become %(target)s.") % {"target": Contact.State(to).label}
        )
    return origins


def _check_move(current: str, to: str) -> None:
    """Refuse (ContactStateError) a move ``Contact.TRANSITIONS`` does not allow."""
    if to not in Contact.TRANSITIONS[current]:
        raise ContactStateError(
            _("A %(current)s contact cannot become %(target)s.")
            % {"current": Contact.State(current).label, "target": Contact.State(to).label}
        )
