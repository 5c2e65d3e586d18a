"""Writes on partners, campaigns, contacts and the do-not-call lists."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
from collections.abc import Iterable
from functools import partial
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from campaigns import limits
from campaigns.deliveries import emit_event
from campaigns.eligibility import blocked_for_good, count_blocked
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    Partner,
    PartnerApiKey,
    PartnerMember,
    TokenVersion,
    WebhookEvent,
)
from campaigns.phones import normalize_phone, time_zones_for
from campaigns.tasks import prerender_campaign_speech_task
from templates.linting import lint_template
from voices import speech
from voices.services import RETRY_SYNC_CLAIM, ensure_default_voice, queue_voice_sync

logger = logging.getLogger(__name__)

# Contacts that still wait for a call.
WAITING_STATES = (Contact.State.PENDING, Contact.State.RETRY)


class Refusal(Exception):
    """A write that the present state of things does not allow; ``reasons`` says every why.
    (Invalid input is a ValidationError instead.)"""

    def __init__(self, *reasons: str) -> None:
        super().__init__(" ".join(reasons))
        self.reasons = list(reasons)


class CampaignStateError(Refusal):
    """The campaign cannot make the requested move; ``reasons`` says every why."""


def create_partner(*, name: str) -> Partner:
    """A new, active partner."""
    partner = Partner(name=name.strip())
    partner.full_clean()
    partner.save()
    return partner


@dataclasses.dataclass(frozen=True)
class Onboarding:
    """A new partner with its first user and API key. ``api_key`` (and ``password`` when
    one was generated) exist only here: they are stored hashed."""

    partner: Partner
    user: AbstractBaseUser
    api_key: str
    password: str | None


@transaction.atomic
def onboard_partner(
    *, name: str, username: str, email: str = "", password: str | None = None
) -> Onboarding:
    """Create a partner with its first user (who acts for it in the API) and API key.
    Without ``password`` a strong one is generated and returned once."""
    partner = create_partner(name=name)
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ValidationError(
            {"username": _("A user named “%(name)s” already exists.") % {"name": username}}
        )
    generated = None if password else secrets.token_urlsafe(18)
    user = user_model(username=username, email=email)
    user.set_password(password or generated)
    user.full_clean()
    user.save()
    PartnerMember.objects.create(user=user, partner=partner)
    _key, api_key = create_api_key(partner=partner, name=_("First key"))
    return Onboarding(partner=partner, user=user, api_key=api_key, password=generated)


def create_api_key(
    *,
    partner: Partner,
    name: str,
    expiry_date: datetime.datetime | None = None,
    can_manage_access: bool = False,
    created_by_key: PartnerApiKey | None = None,
) -> tuple[PartnerApiKey, str]:
    """A new API key for ``partner``: the stored row and the key itself, which is shown
    once and never stored. ``created_by_key`` is the key that asked for it, if any:
    revoking that key revokes this one too."""
    fields = {
        "partner": partner,
        "name": name,
        "expiry_date": expiry_date,
        "can_manage_access": can_manage_access,
        "created_by_key": created_by_key,
    }
    PartnerApiKey(**fields).full_clean(exclude=["id", "prefix", "hashed_key"])
    return PartnerApiKey.objects.create_key(**fields)


def revoke_api_key(*, api_key: PartnerApiKey) -> PartnerApiKey:
    """Revoke ``api_key`` for good, and every key it made (and they made, on down):
    requests made with any of them are refused from now on."""
    with transaction.atomic():
        ids = {api_key.pk}
        generation = {api_key.pk}
        while generation:
            generation = set(
                PartnerApiKey.objects.filter(created_by_key__in=generation)
                .exclude(pk__in=ids)
                .values_list("pk", flat=True)
            )
            ids |= generation
        PartnerApiKey.objects.filter(pk__in=ids, revoked=False).update(revoked=True)
    api_key.revoked = True
    return api_key


def end_api_tokens(*, user: AbstractBaseUser) -> None:
    """End every JWT (access and refresh) issued to ``user`` so far, on every device:
    the API refuses them from now on. A password change does this by itself."""
    TokenVersion.objects.get_or_create(user=user)
    TokenVersion.objects.filter(user=user).update(
        version=F("version") + 1, updated_at=timezone.now()
    )


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
    elif to == Campaign.State.COMPLETED:
        _emit_campaign_completed(campaign)
    return campaign


def _emit_campaign_completed(campaign: Campaign) -> None:
    """Tell the partner's webhooks the campaign is done, with its contacts counted by state."""
    counts = dict(
        campaign.contacts.order_by()
        .values("state")
        .annotate(count=Count("pk"))
        .values_list("state", "count")
    )
    emit_event(
        partner=campaign.partner,
        event_type=WebhookEvent.CAMPAIGN_COMPLETED,
        payload={
            "campaign": {
                "id": campaign.pk,
                "name": campaign.name,
                "state": campaign.state,
                "state_reason": campaign.state_reason,
                "completed_at": campaign.state_changed_at,
            },
            "contacts": {
                "total": sum(counts.values()),
                **{state: counts.get(state, 0) for state in Contact.State.values},
            },
        },
        key=f"campaign:{campaign.pk}",
    )


def start_problems(*, campaign: Campaign, now: datetime.datetime | None = None) -> list[str]:
    """Every reason ``campaign`` cannot start (or resume) now; empty when it can."""
    now = now or timezone.now()
    problems = template_problems(campaign=campaign)
    if speech.is_configured() and campaign.voice_id is None:
        problems.extend(_default_voice_problems())
    problems.extend(_caller_number_problems(campaign))
    problems.extend(limits.dial_problems(campaign=campaign))
    problems.extend(_waiting_contact_problems(campaign))
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


def _waiting_contact_problems(campaign: Campaign) -> list[str]:
    """Why nobody would be called: no contact waits, or none of those waiting can ever be
    called as things stand, each reason with how many contacts it stops."""
    waiting = campaign.contacts.filter(state__in=WAITING_STATES)
    if not waiting.exists():
        message = _("The campaign has no contacts waiting to be called.")
        rejected = campaign.imports.aggregate(rows=Sum("error_count"))["rows"]
        if rejected and not campaign.contacts.exists():
            message += " " + ngettext(
                "Its imports rejected %(count)s row; their reports say why.",
                "Its imports rejected %(count)s rows; their reports say why.",
                rejected,
            ) % {"count": rejected}
        return [message]
    blocked = count_blocked(campaign=campaign, contacts=waiting)
    if blocked.blocked < blocked.total:
        return []
    message = ngettext(
        "The one contact waiting cannot be called: %(why)s.",
        "None of the %(total)s contacts waiting can be called: %(why)s.",
        blocked.total,
    ) % {"total": blocked.total, "why": blocked.describe()}
    if any(blocked.missing.values()):
        message += " " + _(
            "Give them the missing variables (import them again with those columns: rows "
            "merge into the contacts they match), or a default in the template's lines."
        )
    return [message]


def start_warnings(*, campaign: Campaign) -> list[str]:
    """What a start or resume lets through but staff should know: contacts waiting that
    cannot be called as things stand, counted by reason (empty: none)."""
    blocked = count_blocked(
        campaign=campaign, contacts=campaign.contacts.filter(state__in=WAITING_STATES)
    )
    if not blocked.blocked or blocked.blocked == blocked.total:
        return []
    return [
        ngettext(
            "%(count)s of the %(total)s contacts waiting cannot be called: %(why)s.",
            "%(count)s of the %(total)s contacts waiting cannot be called: %(why)s.",
            blocked.blocked,
        )
        % {"count": blocked.blocked, "total": blocked.total, "why": blocked.describe()}
    ]


def _default_voice_problems() -> list[str]:
    """Why a campaign without a voice of its own cannot speak: the default voice does not
    resolve. When the catalogue lacks it, it is fetched from ElevenLabs here, by id or by
    syncing the catalogue, while staff wait (a few seconds at most) and before any call
    needs it; when ElevenLabs cannot be reached, a sync is queued to retry meanwhile."""
    try:
        voice = ensure_default_voice(sync=True)
    except speech.SpeechUnavailable as exc:
        transaction.on_commit(partial(queue_voice_sync, claim=RETRY_SYNC_CLAIM))
        return [
            _(
                "No voice: the campaign has none of its own, and ElevenLabs could not be "
                "asked for the default voice (ELEVENLABS_DEFAULT_VOICE is “%(voice)s”): "
                "%(error)s. The voices are being fetched in the background: try again in a "
                "minute or two, or choose a voice for the campaign."
            )
            % {"voice": settings.ELEVENLABS_DEFAULT_VOICE, "error": exc}
        ]
    except speech.SpeechRejected as exc:
        return [
            _(
                "No voice: the campaign has none of its own, and ElevenLabs refused to list "
                "the voices (HTTP %(status)s: %(message)s). Check ELEVENLABS_API_KEY, or "
                "choose a voice for the campaign."
            )
            % {"status": exc.status_code, "message": exc.provider_message or exc}
        ]
    if voice is not None:
        return []
    return [
        _(
            "No voice: the campaign has none of its own, and ELEVENLABS_DEFAULT_VOICE is "
            "“%(voice)s”, which names no ElevenLabs voice. Choose a voice for the campaign, "
            "make one the default on the Voices page, or set ELEVENLABS_DEFAULT_VOICE to a "
            "voice id or to the name of a synced voice."
        )
        % {"voice": settings.ELEVENLABS_DEFAULT_VOICE}
    ]


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
    """Close the campaign as done: no contact of it will ever be dialled again. One that
    never placed a call is not a success: its state reason says why nobody was called."""
    reason = nobody_called_reason(campaign=campaign)
    if reason:
        logger.warning("campaign %s completed without a call: %s", campaign.pk, reason)
    return transition_campaign(campaign=campaign, to=Campaign.State.COMPLETED, reason=reason)


# Of a state reason that gives an example of another one.
_EXAMPLE_MAX_LENGTH = 160


def nobody_called_reason(*, campaign: Campaign) -> str:
    """Why ``campaign`` placed no call, each reason with how many contacts it stopped;
    empty when it placed one."""
    if campaign.calls.placed().exists():
        return ""
    blocked = count_blocked(campaign=campaign, contacts=campaign.contacts.all())
    if not blocked.total:
        return _("No call was made: the campaign has no contacts.")
    parts = [blocked.describe()] if blocked.blocked else []
    rest = campaign.contacts.exclude(blocked_for_good(campaign=campaign))
    waiting = rest.filter(state__in=WAITING_STATES).count()
    if waiting:
        parts.append(
            ngettext(
                "%(count)s was still waiting for its time to call when the campaign ended",
                "%(count)s were still waiting for their time to call when the campaign ended",
                waiting,
            )
            % {"count": waiting}
        )
    others = rest.exclude(state__in=WAITING_STATES)
    if count := others.count():
        example = (
            others.exclude(state_reason="").values_list("state_reason", flat=True).first() or ""
        )
        if len(example) > _EXAMPLE_MAX_LENGTH:
            example = example[: _EXAMPLE_MAX_LENGTH - 1] + "…"
        if example:
            part = ngettext(
                "%(count)s could not be called for another reason (%(example)s)",
                "%(count)s could not be called for other reasons (such as: %(example)s)",
                count,
            )
        else:
            part = ngettext(
                "%(count)s could not be called for another reason",
                "%(count)s could not be called for other reasons",
                count,
            )
        parts.append(part % {"count": count, "example": example})
    return ngettext(
        "No call was made: of its %(total)s contact, %(why)s.",
        "No call was made: of its %(total)s contacts, %(why)s.",
        blocked.total,
    ) % {"total": blocked.total, "why": "; ".join(parts)}


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


# A campaign's settings may change before it starts and while it is paused, not while it
# calls (the dispatcher reads them on every tick) nor once it is over.
EDITABLE_STATES = (Campaign.State.DRAFT, Campaign.State.PAUSED)
FINAL_STATES = (Campaign.State.COMPLETED, Campaign.State.CANCELLED)


class ContactStateError(Refusal):
    """The contact cannot be changed or removed now; ``reasons`` says every why."""


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
    by: AbstractBaseUser | None = None,
    region: str | None = None,
) -> DoNotCallBatch:
    """``add_do_not_call`` for a list of numbers, in a few queries whatever its length.
    Numbers that cannot be read are reported by index; the others are added."""
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
    DoNotCall.objects.bulk_create(entries, ignore_conflicts=True)
    return DoNotCallBatch(created=len(entries), existing=len(listed) + repeats, errors=errors)


class DoNotCallProtected(Refusal):
    """The entry records a callee's own request and may not be removed by a partner."""


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
