"""Writes on partners, campaigns, contacts and the do-not-call lists."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Contact, DoNotCall, Partner
from campaigns.phones import normalize_phone, time_zones_for
from campaigns.tasks import prerender_campaign_speech_task
from templates.linting import lint_template
from voices import speech
from voices.services import voice_for_campaign

logger = logging.getLogger(__name__)

# Contacts that still wait for a call.
WAITING_STATES = (Contact.State.PENDING, Contact.State.RETRY)


class CampaignStateError(Exception):
    """The campaign cannot make the requested move; ``reasons`` says every why."""

    def __init__(self, *reasons: str) -> None:
        super().__init__(" ".join(reasons))
        self.reasons = list(reasons)


def create_partner(*, name: str) -> Partner:
    """A new, active partner."""
    partner = Partner(name=name.strip())
    partner.full_clean()
    partner.save()
    return partner


def transition_campaign(*, campaign: Campaign, to: str, reason: str = "") -> Campaign:
    """Move ``campaign`` along the state machine, safe against concurrent moves.

    The update is a compare-and-set on the state read: if another process moved the
    campaign in between, nothing is written and CampaignStateError says so. Use the
    lifecycle services below, which check what each move needs first. ``reason`` says
    why when the platform itself makes the move; a move by a person clears it.
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
    now = timezone.now()
    updated = Campaign.objects.filter(pk=campaign.pk, state=current).update(
        state=to, state_changed_at=now, state_reason=reason[:500], updated_at=now
    )
    if updated != 1:
        campaign.refresh_from_db(fields=["state", "state_changed_at", "state_reason", "updated_at"])
        raise CampaignStateError(
            _("The campaign changed state meanwhile; it is now %(state)s.")
            % {"state": campaign.get_state_display()}
        )
    campaign.state, campaign.state_changed_at, campaign.updated_at = to, now, now
    campaign.state_reason = reason[:500]
    if to == Campaign.State.RUNNING:
        prerender_campaign_speech_task.delay_on_commit(campaign.pk)
    return campaign


def start_problems(*, campaign: Campaign, now: datetime.datetime | None = None) -> list[str]:
    """Every reason ``campaign`` cannot start (or resume) now; empty when it can."""
    now = now or timezone.now()
    problems = template_problems(campaign=campaign)
    if speech.is_configured() and voice_for_campaign(campaign=campaign) is None:
        problems.append(
            _("No voice: choose one or sync the default voice (%(voice)s) from ElevenLabs.")
            % {"voice": settings.ELEVENLABS_DEFAULT_VOICE}
        )
    problems.extend(_caller_number_problems(campaign))
    if not campaign.contacts.filter(state__in=WAITING_STATES).exists():
        problems.append(_("The campaign has no contacts waiting to be called."))
    if campaign.ends_at is not None and campaign.ends_at <= now:
        problems.append(_("The campaign's end date has passed."))
    try:
        campaign.full_clean()
    except ValidationError as exc:
        problems.extend(
            f"{_field_label(field)}: {message}"
            for field, messages in exc.message_dict.items()
            for message in messages
        )
    return problems


def template_problems(*, campaign: Campaign) -> list[str]:
    """Why the campaign's template cannot be used on calls yet (empty: it can)."""
    if campaign.template is None:
        return [_("The campaign has no call template.")]
    return lint_template(template=campaign.template)


def start_campaign(*, campaign: Campaign, now: datetime.datetime | None = None) -> Campaign:
    """Start a draft campaign: scheduled when its start is still ahead, running otherwise.

    Refuses, listing every reason at once, when the template fails its lint, no voice or
    caller number is set, no contact waits, or the settings do not hold together.
    """
    now = now or timezone.now()
    problems = start_problems(campaign=campaign, now=now)
    if problems:
        raise CampaignStateError(*problems)
    ahead = campaign.starts_at is not None and campaign.starts_at > now
    return transition_campaign(
        campaign=campaign, to=Campaign.State.SCHEDULED if ahead else Campaign.State.RUNNING
    )


def pause_campaign(*, campaign: Campaign, reason: str = "") -> Campaign:
    """Stop dialling new calls; calls already going on finish. ``reason``: why the
    platform paused it (shown to staff and partners); empty when a person did."""
    return transition_campaign(campaign=campaign, to=Campaign.State.PAUSED, reason=reason)


def resume_campaign(*, campaign: Campaign, now: datetime.datetime | None = None) -> Campaign:
    """Dial again, after checking what a start checks (things may have changed)."""
    problems = start_problems(campaign=campaign, now=now)
    if problems:
        raise CampaignStateError(*problems)
    return transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)


def cancel_campaign(*, campaign: Campaign) -> Campaign:
    """End the campaign for good: no contact of it will ever be dialled again."""
    return transition_campaign(campaign=campaign, to=Campaign.State.CANCELLED)


def complete_campaign(*, campaign: Campaign) -> Campaign:
    """Close the campaign as done: no contact of it will ever be dialled again."""
    return transition_campaign(campaign=campaign, to=Campaign.State.COMPLETED)


def advance_campaigns(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Beat's view of the calendar: scheduled campaigns whose start has come run, running
    campaigns past their end or with nobody left to call complete. Returns the counts."""
    now = now or timezone.now()
    started = completed = 0
    for campaign in Campaign.objects.filter(
        state=Campaign.State.SCHEDULED, starts_at__lte=now
    ).select_related("template__partner"):
        try:
            transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
            started += 1
        except CampaignStateError as exc:
            logger.warning("scheduled campaign %s did not start: %s", campaign.pk, exc)
    for campaign in Campaign.objects.running():
        ended = campaign.ends_at is not None and campaign.ends_at <= now
        if (
            not ended
            and campaign.contacts.filter(
                state__in=[*WAITING_STATES, Contact.State.CALLING]
            ).exists()
        ):
            continue
        try:
            complete_campaign(campaign=campaign)
            completed += 1
        except CampaignStateError as exc:
            logger.warning("campaign %s was not completed: %s", campaign.pk, exc)
    return {"started": started, "completed": completed}


def _caller_number_problems(campaign: Campaign) -> list[str]:
    number = campaign.effective_caller_number
    if not number:
        return [_("No caller number: set one on the campaign or TWILIO_PHONE_NUMBER.")]
    if campaign.compliance_profile == Campaign.ComplianceProfile.ES and number.startswith("+34"):
        # Orden TDF/149/2025 (ES-6): commercial calls may not show a Spanish mobile number.
        kind = phonenumbers.number_type(phonenumbers.parse(number))
        if kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            return [
                _(
                    "The caller number %(number)s is a mobile: Spanish rules forbid mobile "
                    "numbers for commercial calls."
                )
                % {"number": number}
            ]
    return []


def _field_label(name: str) -> str:
    if name == "__all__":
        return _("Campaign")
    return str(Campaign._meta.get_field(name).verbose_name).capitalize()


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
