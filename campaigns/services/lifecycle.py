"""A campaign's life: the state machine, what a start needs, and the calendar's moves."""

from __future__ import annotations

import datetime
import logging
from functools import partial

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Field, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit import services as audit
from callcenter.text import truncate
from campaigns import limits
from campaigns.deliveries import emit_event
from campaigns.eligibility import blocked_for_good, count_blocked
from campaigns.models import Campaign, Contact, WebhookEvent
from campaigns.reports import campaign_abandonment
from campaigns.services.contacts import WAITING_STATES
from campaigns.services.errors import CampaignStateError
from campaigns.suppression import list_problems
from campaigns.tasks import prerender_campaign_speech_task
from templates.linting import lint_template, recording_problems
from voices import speech
from voices.services import RETRY_SYNC_CLAIM, ensure_default_voice, queue_voice_sync

logger = logging.getLogger(__name__)


def transition_campaign(
    *, campaign: Campaign, to: str, reason: str = "", actor: audit.Actor = audit.SYSTEM
) -> Campaign:
    """Move ``campaign`` along the state machine, safe against concurrent moves.

    The update is a compare-and-set on the state read: if another process moved the
    campaign in between, nothing is written and CampaignStateError says so. Use the
    lifecycle services below, which check what each move needs first. ``reason`` says
    why when the platform itself makes the move; a move by a person clears it. The move
    is recorded in the audit trail (``campaign.<started|paused|...>``) as ``actor``'s,
    in the same transaction.
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
    with transaction.atomic():
        updated = Campaign.objects.filter(pk=campaign.pk, state=current).update(
            state=to, state_changed_at=now, state_reason=truncate(reason), updated_at=now
        )
        if updated == 1:
            audit.record(
                _move_action(current, to),
                partner_id=campaign.partner_id,
                object_type="campaigns.campaign",
                object_id=campaign.pk,
                actor=actor,
                details={"from": current, "to": to, "reason": truncate(reason)},
            )
    if updated != 1:
        campaign.refresh_from_db(fields=["state", "state_changed_at", "state_reason", "updated_at"])
        raise CampaignStateError(
            _("The campaign changed state meanwhile; it is now %(state)s.")
            % {"state": campaign.get_state_display()}
        )
    campaign.state, campaign.state_changed_at, campaign.updated_at = to, now, now
    campaign.state_reason = truncate(reason)
    if to == Campaign.State.RUNNING:
        # celery-types knows not the DjangoTask class Celery's Django fix-up gives tasks.
        prerender_campaign_speech_task.delay_on_commit(campaign.pk)  # type: ignore[attr-defined]
    elif to == Campaign.State.COMPLETED:
        _emit_campaign_completed(campaign)
    return campaign


def _move_action(current: str, to: str) -> str:
    """The audit trail's name for a move from ``current`` to ``to``."""
    State = Campaign.State
    if to == State.RUNNING and current == State.PAUSED:
        return audit.Action.CAMPAIGN_RESUMED
    moves: dict[str, str] = {
        State.SCHEDULED: audit.Action.CAMPAIGN_STARTED,
        State.RUNNING: audit.Action.CAMPAIGN_STARTED,
        State.PAUSED: audit.Action.CAMPAIGN_PAUSED,
        State.CANCELLED: audit.Action.CAMPAIGN_CANCELLED,
        State.COMPLETED: audit.Action.CAMPAIGN_COMPLETED,
    }
    return moves.get(to, audit.Action.OBJECT_CHANGED)  # back to draft: its state changed


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
    # US-9, ES-5: a marketing campaign's national lists, imported and fresh enough.
    problems.extend(list_problems(campaign=campaign, today=timezone.localdate(now)))
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
    cannot be called as things stand, counted by reason, and an abandonment rate still at
    the limit (empty: none)."""
    warnings = _abandonment_warnings(campaign)
    blocked = count_blocked(
        campaign=campaign, contacts=campaign.contacts.filter(state__in=WAITING_STATES)
    )
    if not blocked.blocked or blocked.blocked == blocked.total:
        return warnings
    return [
        *warnings,
        ngettext(
            "%(count)s of the %(total)s contacts waiting cannot be called: %(why)s.",
            "%(count)s of the %(total)s contacts waiting cannot be called: %(why)s.",
            blocked.blocked,
        )
        % {"count": blocked.blocked, "total": blocked.total, "why": blocked.describe()},
    ]


def _abandonment_warnings(campaign: Campaign) -> list[str]:
    """A campaign resumed with its abandonment rate at the limit is not refused (only more
    good calls bring the rate down), but its next abandoned call pauses it again."""
    figures = campaign_abandonment(campaign=campaign)
    if not figures.at_limit:
        return []
    return [
        _(
            "Its abandonment rate is still at the 3%% limit (%(figures)s): its next "
            "abandoned call pauses it again."
        )
        % {"figures": figures.label()}
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
    return [
        *lint_template(template=campaign.template),
        *recording_problems(template=campaign.template, records=campaign.record_calls),
    ]


def start_campaign(
    *,
    campaign: Campaign,
    now: datetime.datetime | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> Campaign:
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
        campaign=campaign,
        to=Campaign.State.SCHEDULED if ahead else Campaign.State.RUNNING,
        actor=actor,
    )


def pause_campaign(
    *, campaign: Campaign, reason: str = "", actor: audit.Actor = audit.SYSTEM
) -> Campaign:
    """Stop dialling new calls; calls already going on finish. ``reason``: why the
    platform paused it (shown to staff and partners); empty when a person did."""
    return transition_campaign(
        campaign=campaign, to=Campaign.State.PAUSED, reason=reason, actor=actor
    )


def resume_campaign(
    *,
    campaign: Campaign,
    now: datetime.datetime | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> Campaign:
    """Dial again, after checking what a start checks (things may have changed)."""
    problems = start_problems(campaign=campaign, now=now)
    if problems:
        raise CampaignStateError(*problems)
    return transition_campaign(campaign=campaign, to=Campaign.State.RUNNING, actor=actor)


def cancel_campaign(*, campaign: Campaign, actor: audit.Actor = audit.SYSTEM) -> Campaign:
    """End the campaign for good: no contact of it will ever be dialled again."""
    return transition_campaign(campaign=campaign, to=Campaign.State.CANCELLED, actor=actor)


def complete_campaign(*, campaign: Campaign, actor: audit.Actor = audit.SYSTEM) -> Campaign:
    """Close the campaign as done: no contact of it will ever be dialled again. One that
    never placed a call is not a success: its state reason says why nobody was called."""
    reason = nobody_called_reason(campaign=campaign)
    if reason:
        logger.warning("campaign %s completed without a call: %s", campaign.pk, reason)
    return transition_campaign(
        campaign=campaign, to=Campaign.State.COMPLETED, reason=reason, actor=actor
    )


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
        # The lists may have gone stale since staff scheduled it: it stays scheduled (and
        # says why) until a fresh copy is imported.
        if stale := list_problems(campaign=campaign, today=timezone.localdate(now)):
            _hold_scheduled(campaign, " ".join(stale))
            continue
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


def _hold_scheduled(campaign: Campaign, reason: str) -> None:
    """Keep a scheduled campaign from starting, saying why on it (once, not every tick)."""
    reason = truncate(reason)
    if campaign.state_reason != reason:
        Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.SCHEDULED).update(
            state_reason=reason
        )
        logger.warning("scheduled campaign %s did not start: %s", campaign.pk, reason)


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
    field = Campaign._meta.get_field(name)
    return str(field.verbose_name if isinstance(field, Field) else name).capitalize()
