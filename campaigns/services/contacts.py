"""Writes on contacts: add, change, delete."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Contact
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
