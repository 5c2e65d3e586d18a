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

from audit import services as audit
from callcenter.text import truncate
from campaigns.eligibility import Eligibility, ReasonCode
from campaigns.models import BASIS_FIELDS, ERASED_NUMBER_MESSAGE, Campaign, Contact, ErasedNumber
from campaigns.phones import normalize_phone, time_zones_for
from campaigns.services.campaigns import FINAL_STATES
from campaigns.services.errors import ContactStateError

# Contacts that still wait for a call.
WAITING_STATES = (Contact.State.PENDING, Contact.State.RETRY)


def update_contact(
    *, contact: Contact, actor: audit.Actor = audit.SYSTEM, via: str = "api", **changes: Any
) -> Contact:
    """Change a contact's variables, time zone, external id or legal basis while its
    campaign is not over and no call to it is going on; a change of basis is audited
    (``actor``, ``via``). Raises ContactStateError or ValidationError."""
    with transaction.atomic():
        locked = Contact.objects.select_for_update().select_related("campaign").get(pk=contact.pk)
        problems = _contact_change_problems(locked)
        if problems:
            raise ContactStateError(*problems)
        before = locked.basis_snapshot()
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.full_clean()
        locked.save(update_fields=[*changes, "updated_at"])
        record_basis_change(contact=locked, before=before, actor=actor, via=via)
    return locked


def blank_basis() -> dict[str, Any]:
    """The basis fields of a contact with none recorded."""
    return {name: None if name.endswith("_at") else "" for name in BASIS_FIELDS}


def keep_withdrawal(
    *, withdrawn_at: datetime.datetime | None, basis: dict[str, Any]
) -> dict[str, Any]:
    """``basis`` to replace one withdrawn at ``withdrawn_at``: the withdrawal stands unless
    the new basis names its own or was obtained after it (fresh consent)."""
    obtained_at = basis.get("basis_obtained_at")
    if (
        withdrawn_at is None
        or basis.get("basis_withdrawn_at")
        or (obtained_at is not None and obtained_at > withdrawn_at)
    ):
        return basis
    return {**basis, "basis_withdrawn_at": withdrawn_at}


def record_basis_change(
    *,
    contact: Contact,
    before: dict[str, Any] | None,
    actor: audit.Actor = audit.SYSTEM,
    via: str,
) -> None:
    """Audit ``contact``'s legal basis if it differs from ``before`` (None: a new contact):
    kinds and times, never the wording nor the number (hashed as the subject). Call it in
    the transaction that saved the change."""
    event = basis_change_event(contact=contact, before=before, actor=actor, via=via)
    if event is not None:
        audit.record_many([event])


def basis_change_event(
    *,
    contact: Contact,
    before: dict[str, Any] | None,
    actor: audit.Actor = audit.SYSTEM,
    via: str,
) -> audit.Event | None:
    """The audit event of ``record_basis_change``; None when the basis did not change."""
    after = contact.basis_snapshot()
    empty = Contact(legal_basis="").basis_snapshot()
    if after == (before if before is not None else empty):
        return None
    return audit.Event(
        audit.Action.BASIS_CHANGED,
        partner_id=contact.campaign.partner_id,
        subject_phone=contact.phone,
        object_type="campaigns.contact",
        object_id=contact.pk,
        actor=actor,
        details={"old": before or empty, "new": after, "via": via},
    )


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
    basis: dict[str, Any] | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> tuple[Contact, bool]:
    """Add a contact to ``campaign``, or merge into the one it duplicates.

    A contact with the same external id, or else the same normalised phone, is the same
    person: its variables are merged and no second contact is made. An external id of a
    contact with another phone is refused (as an import's row is): merging would drop the
    phone given. ``basis`` (some of BASIS_FIELDS; the others blank) replaces the legal
    basis recorded, audited as done by ``actor``. Returns the contact and whether it was
    created. Invalid input raises ValidationError naming the field.
    """
    if basis:
        basis = {**blank_basis(), **basis}
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
                basis=basis or {},
                actor=actor,
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
                basis=basis or {},
                actor=actor,
            )


def _refuse_erased(*, campaign: Campaign, phone: str) -> None:
    """A number erased at its owner's request (privacy.erasure) is never added again."""
    if ErasedNumber.objects.blocking(partner_id=campaign.partner_id, phone=phone).exists():
        raise ValidationError({"phone": ValidationError(ERASED_NUMBER_MESSAGE, code="erased")})


def _merge_or_create_contact(
    *,
    campaign: Campaign,
    phone: str,
    time_zone: str,
    variables: dict[str, Any],
    external_id: str,
    basis: dict[str, Any],
    actor: audit.Actor,
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
        before = existing.basis_snapshot()
        existing.variables = {**existing.variables, **variables}
        if basis:
            basis = keep_withdrawal(withdrawn_at=existing.basis_withdrawn_at, basis=basis)
        for name, value in basis.items():
            setattr(existing, name, value)
        existing.full_clean()
        existing.save(update_fields=["variables", *basis, "updated_at"])
        record_basis_change(contact=existing, before=before, actor=actor, via="api")
        return existing, False
    contact = Contact(
        campaign=campaign,
        phone=phone,
        time_zone=time_zone,
        variables=variables,
        external_id=external_id,
        **basis,
    )
    contact.full_clean()
    contact.save()
    record_basis_change(contact=contact, before=None, actor=actor, via="api")
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
    the reason), and end its legal basis (withdrawn at ``now``, audited as the callee's
    doing; an earlier withdrawal stands). False when the contact is gone."""
    with transaction.atomic():
        locked = (
            Contact.objects.select_for_update()
            .select_related("campaign")
            .filter(pk=contact.pk, state__in=_origins(Contact.State.OPTED_OUT))
            .first()
        )
        if locked is None:
            return False
        before = locked.basis_snapshot()
        locked.basis_withdrawn_at = locked.basis_withdrawn_at or now
        Contact.objects.filter(pk=locked.pk).update(
            state=Contact.State.OPTED_OUT,
            state_reason=truncate(reason),
            next_attempt_at=None,
            basis_withdrawn_at=locked.basis_withdrawn_at,
            updated_at=now,
        )
        record_basis_change(contact=locked, before=before, actor=audit.CALLEE, via="opt_out")
    contact.basis_withdrawn_at = locked.basis_withdrawn_at
    return True


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
