"""Campaigns: their states and choices, retry policy and sandbox persona mix, and their checks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from campaigns.models.partners import ComplianceProfile, Partner
from campaigns.phones import validate_phone_number
from campaigns.rules import calling_window_problems


class CampaignQuerySet(models.QuerySet):
    def running(self) -> CampaignQuerySet:
        return self.filter(state=Campaign.State.RUNNING)

    def for_partner(self, partner: Partner) -> CampaignQuerySet:
        return self.filter(partner=partner)

    def calling_from(self, number: str) -> CampaignQuerySet:
        """Campaigns whose calls come from ``number``: their own caller number, or
        TWILIO_PHONE_NUMBER for those that leave theirs empty."""
        if not number:
            return self.none()
        numbers = Q(caller_number=number)
        if number == settings.TWILIO_PHONE_NUMBER:
            numbers |= Q(caller_number="")
        return self.filter(numbers)


# Choices live at module level so that Meta constraints can name their values.
class CampaignState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class CampaignPurpose(models.TextChoices):
    MARKETING = "marketing", _("Marketing")
    SERVICE = "service", _("Service (not marketing)")


class MachineAction(models.TextChoices):
    VOICEMAIL = "voicemail", _("Leave the voicemail message")
    HANGUP = "hangup", _("Hang up")


class ConversationTransport(models.TextChoices):
    """How an AI conversation reaches the caller: turn by turn with <Gather> (our clips,
    Twilio's speech recognition per turn), or streamed over Twilio's ConversationRelay
    WebSocket (Twilio recognises and speaks; the model's words are sent as they come)."""

    GATHER = "gather", _("Turn by turn (<Gather>)")
    RELAY = "relay", _("Streamed (ConversationRelay)")


# The call outcomes that may be retried, spelled as Call statuses (and "voicemail").
RETRY_OUTCOMES = ("busy", "no-answer", "failed", "voicemail")


def default_retry_policy() -> dict[str, dict[str, int]]:
    """Retry a busy line soon, an unanswered one later, a voicemail the next day."""
    return {
        "busy": {"delay_minutes": 30, "max_attempts": 3},
        "no-answer": {"delay_minutes": 120, "max_attempts": 3},
        "failed": {"delay_minutes": 240, "max_attempts": 2},
        "voicemail": {"delay_minutes": 1440, "max_attempts": 2},
    }


def retry_policy_problems(value: Any) -> list[ValidationError]:
    """Why ``value`` is not a retry policy (empty: it is one): each of RETRY_OUTCOMES maps to
    {"delay_minutes": n, "max_attempts": n} with whole numbers n >= 1."""
    if not isinstance(value, dict):
        return [
            ValidationError(
                _(
                    "The retry policy must map each outcome (busy, no-answer, failed, "
                    "voicemail) to a delay and a number of attempts."
                ),
                code="invalid_retry_policy",
            )
        ]
    problems = [
        ValidationError(
            _("“%(outcome)s” is not a retry outcome; use busy, no-answer, failed or voicemail."),
            code="invalid_retry_outcome",
            params={"outcome": outcome},
        )
        for outcome in value
        if outcome not in RETRY_OUTCOMES
    ]
    for outcome in RETRY_OUTCOMES:
        entry = value.get(outcome)
        if entry is None:
            problems.append(
                ValidationError(
                    _("The retry policy has no entry for %(outcome)s."),
                    code="missing_retry_outcome",
                    params={"outcome": outcome},
                )
            )
        elif not isinstance(entry, dict) or set(entry) != {"delay_minutes", "max_attempts"}:
            problems.append(
                ValidationError(
                    _(
                        'The retry policy for %(outcome)s must be {"delay_minutes": …, '
                        '"max_attempts": …}, not %(value)s.'
                    ),
                    code="invalid_retry_entry",
                    params={"outcome": outcome, "value": json.dumps(entry, ensure_ascii=False)},
                )
            )
        else:
            problems.extend(
                ValidationError(
                    _(
                        "The retry policy's %(key)s for %(outcome)s must be a whole number "
                        "of at least 1, not “%(value)s”."
                    ),
                    code="invalid_retry_value",
                    params={"key": key, "outcome": outcome, "value": number},
                )
                for key, number in entry.items()
                # bool is an int in Python, but true is not a number of minutes
                if isinstance(number, bool) or not isinstance(number, int) or number < 1
            )
    return problems


class SandboxPersona(models.TextChoices):
    """The callees the sandbox carrier plays (calls/telephony/sandbox/); named here so that a
    campaign can weigh them without campaigns importing calls."""

    INTERESTED = "interested", _("Interested")
    NOT_INTERESTED = "not_interested", _("Not interested")
    CALLBACK = "callback", _("Asks to be called back")
    OPT_OUT = "opt_out", _("Asks not to be called again")
    SILENT = "silent", _("Answers and stays silent")
    VOICEMAIL = "voicemail", _("Voicemail")
    BUSY = "busy", _("Busy")
    NO_ANSWER = "no_answer", _("No answer")
    INVALID_NUMBER = "invalid_number", _("Invalid number")


def default_sandbox_personas() -> dict[str, int]:
    """Mostly people who talk, some who refuse or opt out, a few lines nobody picks up."""
    return {
        SandboxPersona.INTERESTED.value: 4,
        SandboxPersona.NOT_INTERESTED.value: 2,
        SandboxPersona.CALLBACK.value: 1,
        SandboxPersona.OPT_OUT.value: 1,
        SandboxPersona.VOICEMAIL.value: 1,
        SandboxPersona.BUSY.value: 1,
        SandboxPersona.NO_ANSWER.value: 1,
        SandboxPersona.SILENT.value: 1,
        SandboxPersona.INVALID_NUMBER.value: 0,
    }


def sandbox_personas_problems(value: Any) -> list[ValidationError]:
    """Why ``value`` is not a sandbox persona mix (empty: it is one): persona name to a whole
    number weight >= 0, not all zero. An empty mix stands for the default one."""
    if not isinstance(value, dict):
        return [
            ValidationError(
                _("The sandbox personas must map persona names to whole-number weights."),
                code="invalid_sandbox_personas",
            )
        ]
    problems = [
        ValidationError(
            _("“%(persona)s” is not a sandbox persona; use one of %(personas)s."),
            code="invalid_sandbox_persona",
            params={"persona": persona, "personas": ", ".join(SandboxPersona.values)},
        )
        for persona in value
        if persona not in SandboxPersona.values
    ]
    problems.extend(
        ValidationError(
            _("The weight of %(persona)s must be a whole number of at least 0, not “%(value)s”."),
            code="invalid_sandbox_weight",
            params={"persona": persona, "value": weight},
        )
        for persona, weight in value.items()
        # bool is an int in Python, but true is not a weight
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0
    )
    if value and not problems and sum(value.values()) == 0:
        problems.append(
            ValidationError(
                _("At least one sandbox persona needs a weight above 0."),
                code="sandbox_personas_all_zero",
            )
        )
    return problems


class Campaign(models.Model):
    """A partner's run of calls to a list of contacts, with a template and a voice, and
    the rules for when, how fast and how often it calls them."""

    State = CampaignState
    ComplianceProfile = ComplianceProfile
    Purpose = CampaignPurpose
    MachineAction = MachineAction
    Transport = ConversationTransport

    # The state machine: which states each state may move to. Completed and cancelled
    # are final, so no contact of theirs can ever be dialled again.
    TRANSITIONS: dict[str, frozenset[str]] = {
        State.DRAFT: frozenset({State.SCHEDULED, State.RUNNING, State.CANCELLED}),
        State.SCHEDULED: frozenset({State.DRAFT, State.RUNNING, State.CANCELLED}),
        State.RUNNING: frozenset({State.PAUSED, State.COMPLETED, State.CANCELLED}),
        State.PAUSED: frozenset({State.RUNNING, State.COMPLETED, State.CANCELLED}),
        State.COMPLETED: frozenset(),
        State.CANCELLED: frozenset(),
    }

    partner = models.ForeignKey(
        Partner, verbose_name=_("partner"), on_delete=models.PROTECT, related_name="campaigns"
    )
    name = models.CharField(_("name"), max_length=200)
    state = models.CharField(
        _("state"), max_length=16, choices=State, default=State.DRAFT, db_index=True
    )
    template = models.ForeignKey(
        "templates.CallTemplate",
        verbose_name=_("call template"),
        on_delete=models.PROTECT,
        related_name="campaigns",
        null=True,
        blank=True,
    )
    voice = models.ForeignKey(
        "voices.Voice",
        verbose_name=_("voice"),
        on_delete=models.SET_NULL,
        related_name="campaigns",
        null=True,
        blank=True,
        help_text=_("Empty: the default voice (ELEVENLABS_DEFAULT_VOICE)."),
    )
    caller_number = models.CharField(
        _("caller number"),
        max_length=16,
        blank=True,
        validators=[validate_phone_number],
        help_text=_(
            "The number callees see, in E.164 (+34910000000) or as written in the phone "
            "region below; kept in E.164. Empty: TWILIO_PHONE_NUMBER."
        ),
    )
    phone_region = models.CharField(
        _("phone region"),
        max_length=2,
        default=settings.DEFAULT_PHONE_REGION,
        help_text=_("Region (ISO 3166) used to read contact numbers without a country code."),
    )
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    # Calling rules
    compliance_profile = models.CharField(
        _("compliance profile"),
        max_length=8,
        choices=ComplianceProfile,
        default=ComplianceProfile.ES,
        help_text=_("The legal calling hours, holidays and caps, in each contact's local time."),
    )
    purpose = models.CharField(
        _("purpose"),
        max_length=16,
        choices=CampaignPurpose,
        default=CampaignPurpose.SERVICE,
        help_text=_("Marketing: each contact needs a legal basis its profile accepts."),
    )
    calling_windows = models.JSONField(
        _("calling windows"),
        default=dict,
        blank=True,
        help_text=_(
            'Weekday ("mon" to "sun") to a list of ["HH:MM", "HH:MM"] intervals in the '
            "contact's local time, inside the profile's hours; days left out are not called. "
            "Empty: the profile's hours."
        ),
    )
    frequency_cap_calls = models.PositiveIntegerField(
        _("calls per number"),
        default=3,
        validators=[MinValueValidator(1)],
        help_text=_(
            "At most this many calls to one number, counted across all the partner's "
            "campaigns, in the period below."
        ),
    )
    frequency_cap_hours = models.PositiveIntegerField(
        _("frequency period (hours)"), default=24, validators=[MinValueValidator(1)]
    )
    ring_timeout_seconds = models.PositiveIntegerField(
        _("ring timeout (s)"),
        default=25,
        validators=[MinValueValidator(15), MaxValueValidator(600)],
        help_text=_("How long an unanswered call rings: 15 s at least (US-4)."),
    )
    time_limit_seconds = models.PositiveIntegerField(
        _("call time limit (s)"),
        default=600,
        validators=[MinValueValidator(60), MaxValueValidator(14400)],
    )
    record_calls = models.BooleanField(_("record calls"), default=False)
    transfer_number = models.CharField(
        _("transfer number"),
        max_length=16,
        blank=True,
        validators=[validate_phone_number],
        help_text=_(
            "Where a callee who asks for a person is put through, written as the caller "
            "number; kept in E.164."
        ),
    )
    transport = models.CharField(
        _("conversation transport"),
        max_length=8,
        choices=ConversationTransport,
        default=ConversationTransport.GATHER,
        help_text=_(
            "Streamed: the caller hears the model's first words while it still writes, and "
            "may speak over it; needs ConversationRelay enabled on the Twilio account. "
            "Scripted templates and voicemail messages always play their recorded clips."
        ),
    )
    machine_action = models.CharField(
        _("when a machine answers"),
        max_length=16,
        choices=MachineAction,
        default=MachineAction.VOICEMAIL,
    )
    # Pacing
    max_concurrent_calls = models.PositiveIntegerField(
        _("max concurrent calls"), default=5, validators=[MinValueValidator(1)]
    )
    calls_per_second = models.DecimalField(
        _("calls per second"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    # Retries
    max_attempts = models.PositiveIntegerField(
        _("max attempts"),
        default=3,
        validators=[MinValueValidator(1)],
        help_text=_("Calls to one contact at most, whatever their outcomes."),
    )
    retry_policy = models.JSONField(
        _("retry policy"),
        default=default_retry_policy,
        blank=True,
        help_text=_(
            'For each of busy, no-answer, failed and voicemail: {"delay_minutes": …, '
            '"max_attempts": …}.'
        ),
    )
    state_changed_at = models.DateTimeField(_("state changed at"), null=True, blank=True)
    # Why the campaign last changed state when the platform moved it (a Twilio
    # authentication failure pausing it, say); empty after a move by staff or a partner.
    state_reason = models.CharField(_("state reason"), max_length=500, blank=True)
    # When the abandonment alert (1 % of live-answered calls, calls/abandonment.py) was
    # raised: it is logged and audited once per campaign, not on every call after.
    abandonment_alerted_at = models.DateTimeField(
        _("abandonment alert raised at"), null=True, blank=True
    )
    # Sandbox carrier
    sandbox_personas = models.JSONField(
        _("sandbox personas"),
        default=default_sandbox_personas,
        blank=True,
        help_text=_(
            "Sandbox carrier only (no Twilio credentials): how often each simulated callee "
            'answers, as persona to weight, e.g. {"interested": 4, "busy": 1}. A contact '
            'variable "sandbox_persona" picks one for that contact. Empty: the default mix.'
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]
        # Running a campaign is apart from editing it: operators start and pause
        # campaigns that administrators set up.
        permissions = [("control_campaign", _("Can start, pause, resume and cancel campaigns"))]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"], name="campaign_unique_name_per_partner"
            ),
            models.CheckConstraint(
                condition=Q(state__in=CampaignState.values),
                name="campaign_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True)
                | Q(ends_at__isnull=True)
                | Q(ends_at__gt=models.F("starts_at")),
                name="campaign_ends_after_start",
            ),
            models.CheckConstraint(
                condition=~Q(state=CampaignState.SCHEDULED) | Q(starts_at__isnull=False),
                name="campaign_scheduled_has_start",
            ),
            models.CheckConstraint(
                condition=Q(compliance_profile__in=ComplianceProfile.values),
                name="campaign_compliance_profile_valid",
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=CampaignPurpose.values), name="campaign_purpose_valid"
            ),
            models.CheckConstraint(
                condition=Q(machine_action__in=MachineAction.values),
                name="campaign_machine_action_valid",
            ),
            models.CheckConstraint(
                condition=Q(transport__in=ConversationTransport.values),
                name="campaign_transport_valid",
            ),
            # US-4: let an unanswered call ring for 15 s at least.
            models.CheckConstraint(
                condition=Q(ring_timeout_seconds__gte=15, ring_timeout_seconds__lte=600),
                name="campaign_ring_timeout_range",
            ),
            models.CheckConstraint(
                condition=Q(time_limit_seconds__gte=60, time_limit_seconds__lte=14400),
                name="campaign_time_limit_range",
            ),
            models.CheckConstraint(
                condition=Q(frequency_cap_calls__gte=1, frequency_cap_hours__gte=1),
                name="campaign_frequency_cap_positive",
            ),
            models.CheckConstraint(
                condition=Q(max_concurrent_calls__gte=1), name="campaign_max_concurrent_positive"
            ),
            models.CheckConstraint(
                condition=Q(calls_per_second__gt=0), name="campaign_calls_per_second_positive"
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="campaign_max_attempts_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check the JSON settings: windows that only narrow the profile (US-1, ES-1), a
        retry policy for every outcome and a usable sandbox persona mix."""
        errors: dict[str, list[ValidationError]] = {}
        window_problems = calling_window_problems(
            profile=self.compliance_profile, calling_windows=self.calling_windows
        )
        if window_problems:
            errors["calling_windows"] = window_problems
        retry_problems = retry_policy_problems(self.retry_policy)
        if retry_problems:
            errors["retry_policy"] = retry_problems
        persona_problems = sandbox_personas_problems(self.sandbox_personas)
        if persona_problems:
            errors["sandbox_personas"] = persona_problems
        if errors:
            raise ValidationError(errors)

    def can_move_to(self, state: str) -> bool:
        return state in self.TRANSITIONS[self.state]

    @property
    def effective_caller_number(self) -> str:
        return self.caller_number or settings.TWILIO_PHONE_NUMBER

    # The pacing the dialer applies: the campaign's own, within its partner's caps (which
    # staff may have lowered after the campaign was saved).
    @property
    def effective_max_concurrent_calls(self) -> int:
        return min(self.max_concurrent_calls, self.partner.max_concurrent_calls_cap)

    @property
    def effective_calls_per_second(self) -> Decimal:
        return min(self.calls_per_second, self.partner.calls_per_second_cap)

    @property
    def effective_max_attempts(self) -> int:
        return min(self.max_attempts, self.partner.max_attempts_cap)
