"""Writes on a campaign's settings: create, change, delete."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from campaigns import limits
from campaigns.models import Campaign, Partner
from campaigns.phones import normalize_phone
from campaigns.services.errors import CampaignStateError

# A campaign's settings may change before it starts and while it is paused, not while it
# calls (the dispatcher reads them on every tick) nor once it is over.
EDITABLE_STATES = (Campaign.State.DRAFT, Campaign.State.PAUSED)
FINAL_STATES = (Campaign.State.COMPLETED, Campaign.State.CANCELLED)


def create_campaign(*, partner: Partner, **fields: Any) -> Campaign:
    """A new draft campaign of ``partner`` with ``fields`` (the model's field names).
    Invalid settings raise ValidationError naming each field."""
    campaign = Campaign(partner=partner, **fields)
    _check_campaign(campaign, limited=limits.LIMITED_FIELDS)
    return _save_campaign(campaign, update_fields=None)


def edit_problems(*, campaign: Campaign) -> list[str]:
    """Why ``campaign``'s settings cannot be changed now (empty: they can)."""
    if campaign.state in EDITABLE_STATES:
        return []
    if campaign.state in FINAL_STATES:
        message = _("The campaign is over (%(state)s): its settings can no longer change.")
    else:
        message = _(
            "A %(state)s campaign cannot be changed: pause it first (a scheduled one, cancel it)."
        )
    return [message % {"state": campaign.get_state_display().lower()}]


def update_campaign(*, campaign: Campaign, **changes: Any) -> Campaign:
    """Change a draft or paused campaign's settings (never its partner or state).

    Raises CampaignStateError in any other state, ValidationError naming each invalid field
    or each change beyond the partner's limits (settings left unchanged are not held to
    limits lowered since: the dialer applies those).
    """
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        problems = edit_problems(campaign=locked)
        if problems:
            raise CampaignStateError(*problems)
        for name, value in changes.items():
            setattr(locked, name, value)
        _check_campaign(locked, limited=changes)
        return _save_campaign(locked, update_fields=[*changes, "updated_at"])


def delete_campaign(*, campaign: Campaign) -> None:
    """Delete a draft campaign with its contacts and imports; any other state is refused
    (CampaignStateError): a campaign that ran is cancelled instead, and keeps its history."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != Campaign.State.DRAFT:
            raise CampaignStateError(
                _("Only a draft campaign can be deleted; this one is %(state)s. Cancel it instead.")
                % {"state": locked.get_state_display().lower()}
            )
        if locked.calls.exists():
            # A draft that ran before (paused, then back to draft by staff) keeps its calls.
            raise CampaignStateError(
                _("The campaign has calls, which are kept; cancel it instead.")
            )
        locked.delete()


# A campaign's own numbers: typed as people write them, kept in E.164 as contacts' are.
CAMPAIGN_PHONE_FIELDS = ("caller_number", "transfer_number")


def normalize_campaign_phone(*, value: str, region: str) -> str:
    """A campaign's number (caller or transfer) in E.164, read in the campaign's phone
    region when it has no country code, as a contact's is; empty stays empty. Raises
    ValidationError naming the value when it is not a valid number."""
    return normalize_phone(value, region=region) if value.strip() else ""


def _check_campaign(campaign: Campaign, *, limited: Iterable[str]) -> None:
    """Normalise the campaign's numbers and check it whole, and the fields named in
    ``limited`` against its partner's limits; raise ValidationError naming each field."""
    errors: dict[str, list[Any]] = {}
    unreadable = []  # numbers that are no valid number: said once, not again by the model
    for name in CAMPAIGN_PHONE_FIELDS:
        value = getattr(campaign, name)
        try:
            setattr(
                campaign, name, normalize_campaign_phone(value=value, region=campaign.phone_region)
            )
        except ValidationError as exc:
            errors[name] = exc.messages
            unreadable.append(name)
    if campaign.template is not None and campaign.template.partner_id != campaign.partner_id:
        errors["template"] = [_("This call template belongs to another partner.")]
    if (
        Campaign.objects.filter(partner_id=campaign.partner_id, name=campaign.name)
        .exclude(pk=campaign.pk)
        .exists()
    ):
        errors["name"] = [_("The partner already has a campaign with this name.")]
    try:
        # The partner is ours to set; left out so that the name clash above is reported on
        # the name rather than as the whole object's error.
        campaign.full_clean(exclude=["partner", *unreadable])
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    beyond = limits.limit_errors(
        partner=campaign.partner,
        values={
            name: getattr(campaign, name)
            for name in limited
            if name in limits.LIMITED_FIELDS and name not in errors
        },
    )
    for name, problems in beyond.items():
        errors.setdefault(name, []).extend(problems)
    if errors:
        raise ValidationError(errors)


def _save_campaign(campaign: Campaign, *, update_fields: list[str] | None) -> Campaign:
    try:
        with transaction.atomic():
            campaign.save(update_fields=update_fields)
    except IntegrityError:
        # A concurrent request took the name between the check and the write.
        raise ValidationError(
            {"name": _("The partner already has a campaign with this name.")}
        ) from None
    return campaign


def check_accepts_contacts(*, campaign: Campaign) -> None:
    """Raise CampaignStateError when ``campaign`` takes no more contacts: once completed or
    cancelled, nobody of it is ever called again, so adding someone would mislead."""
    if campaign.state in FINAL_STATES:
        raise CampaignStateError(
            _("The campaign is over (%(state)s): it takes no more contacts.")
            % {"state": campaign.get_state_display().lower()}
        )
