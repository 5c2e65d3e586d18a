"""Writes on partners, campaigns, contacts and the do-not-call lists."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Contact, DoNotCall, Partner
from campaigns.phones import normalize_phone, time_zones_for
from campaigns.tasks import prerender_campaign_speech_task
from templates.linting import lint_template


class CampaignStateError(Exception):
    """The campaign cannot move to the requested state (from the state it is in now)."""


def create_partner(*, name: str) -> Partner:
    """A new, active partner."""
    partner = Partner(name=name.strip())
    partner.full_clean()
    partner.save()
    return partner


def transition_campaign(*, campaign: Campaign, to: str) -> Campaign:
    """Move ``campaign`` along the state machine, safe against concurrent moves.

    A campaign may only run (or be scheduled to) with a template that passes the
    disclosure lint; a refusal lists every reason. The update is a compare-and-set on the
    state read: if another process moved the campaign in between, nothing is written and
    CampaignStateError says so. Starting queues the voicing of its common lines.
    """
    current = campaign.state
    if not campaign.can_move_to(to):
        raise CampaignStateError(
            _("A %(current)s campaign cannot become %(target)s.")
            % {
                "current": Campaign.State(current).label,
                "target": Campaign.State(to).label,
            }
        )
    if to in (Campaign.State.RUNNING, Campaign.State.SCHEDULED):
        problems = template_problems(campaign=campaign)
        if problems:
            raise CampaignStateError(" ".join(problems))
    now = timezone.now()
    updated = Campaign.objects.filter(pk=campaign.pk, state=current).update(
        state=to, state_changed_at=now, updated_at=now
    )
    if updated != 1:
        campaign.refresh_from_db(fields=["state", "state_changed_at", "updated_at"])
        raise CampaignStateError(
            _("The campaign changed state meanwhile; it is now %(state)s.")
            % {"state": campaign.get_state_display()}
        )
    campaign.state, campaign.state_changed_at, campaign.updated_at = to, now, now
    if to == Campaign.State.RUNNING:
        prerender_campaign_speech_task.delay_on_commit(campaign.pk)
    return campaign


def template_problems(*, campaign: Campaign) -> list[str]:
    """Why the campaign's template cannot be used on calls yet (empty: it can)."""
    if campaign.template is None:
        return [_("The campaign has no call template.")]
    return lint_template(template=campaign.template)


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
    person: its variables are merged and no second contact is made. Returns the contact
    and whether it was created. Invalid input raises ValidationError naming the field.
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


def add_do_not_call(
    *,
    phone: str,
    partner: Partner | None,
    source: str,
    reason: str = "",
    by: AbstractBaseUser | None = None,
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
