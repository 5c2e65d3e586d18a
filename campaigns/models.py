"""Partners (tenants), their campaigns and contacts, and the do-not-call lists."""

from __future__ import annotations

import datetime
import json
import secrets
import zoneinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import F, JSONField, Max, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform, KeyTransformExact
from django.db.models.lookups import IsNull, Regex
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from rest_framework_api_key.models import AbstractAPIKey

from campaigns.phones import E164_REGEX, e164_validator, validate_phone_number
from campaigns.rules import calling_window_problems


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("“%(value)s” is not an IANA time zone such as Europe/Madrid."),
            code="invalid_time_zone",
            params={"value": value},
        )


def default_compliance_profiles() -> list[str]:
    """Every profile with calling-hour rules: "none" is staff's to grant."""
    return [ComplianceProfile.US.value, ComplianceProfile.ES.value]


def validate_phone_list(value: Any) -> None:
    """A list of distinct numbers, each in E.164 (``validate_phone_number``)."""
    if not isinstance(value, list) or not all(isinstance(number, str) for number in value):
        raise ValidationError(
            _('Give a list of phone numbers in E.164 form, e.g. ["+34910000000"].'),
            code="invalid_phone_list",
        )
    for number in value:
        validate_phone_number(number)
    if len(set(value)) != len(value):
        raise ValidationError(_("Each number may be listed once."), code="duplicate_phone")


def validate_compliance_profiles(value: Any) -> None:
    """A list of known compliance profiles, each once (empty: the partner may not call)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(
            _("Give a list of compliance profiles: %(profiles)s."),
            code="invalid_compliance_profiles",
            params={"profiles": ", ".join(ComplianceProfile.values)},
        )
    unknown = sorted(set(value) - set(ComplianceProfile.values))
    if unknown:
        raise ValidationError(
            _("Unknown compliance profiles: %(unknown)s; use %(profiles)s."),
            code="unknown_compliance_profiles",
            params={"unknown": ", ".join(unknown), "profiles": ", ".join(ComplianceProfile.values)},
        )
    if len(set(value)) != len(value):
        raise ValidationError(_("Each profile may be listed once."), code="duplicate_profile")


class Partner(models.Model):
    """A tenant: a company that runs campaigns and sees only its own data, within the
    telephony limits staff set for it (campaigns/limits.py)."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    # Telephony limits: staff set them, the partner's campaigns stay within them.
    caller_numbers = models.JSONField(
        _("caller numbers"),
        default=list,
        blank=True,
        validators=[validate_phone_list],
        help_text=_(
            "The numbers its campaigns may call from, in E.164, besides TWILIO_PHONE_NUMBER "
            "(a campaign without a caller number of its own), which is always allowed."
        ),
    )
    transfer_numbers = models.JSONField(
        _("transfer numbers"),
        default=list,
        blank=True,
        validators=[validate_phone_list],
        help_text=_(
            "The numbers its campaigns may put callees through to, in E.164. Empty: its "
            "campaigns cannot transfer calls."
        ),
    )
    compliance_profiles = models.JSONField(
        _("compliance profiles"),
        default=default_compliance_profiles,
        blank=True,
        validators=[validate_compliance_profiles],
        help_text=_(
            'The compliance profiles its campaigns may choose among "us", "es" and "none" '
            "(no calling-hour rules: grant it only to a partner who answers for its own)."
        ),
    )
    max_concurrent_calls_cap = models.PositiveIntegerField(
        _("concurrent calls cap"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("Calls going on at once, across all its campaigns."),
    )
    calls_per_second_cap = models.DecimalField(
        _("calls per second cap"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text=_("Calls started per second, across all its campaigns."),
    )
    max_attempts_cap = models.PositiveIntegerField(
        _("attempts cap"),
        default=3,
        validators=[MinValueValidator(1)],
        help_text=_("Calls to one contact of a campaign at most."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    max_concurrent_calls_cap__gte=1,
                    calls_per_second_cap__gt=0,
                    max_attempts_cap__gte=1,
                ),
                name="partner_caps_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


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


class ComplianceProfile(models.TextChoices):
    US = "us", _("United States")
    ES = "es", _("Spain")
    NONE = "none", _("No calling-hour rules")


class MachineAction(models.TextChoices):
    VOICEMAIL = "voicemail", _("Leave the voicemail message")
    HANGUP = "hangup", _("Hang up")


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
    """The callees the sandbox carrier plays (calls/sandbox.py); named here so that a
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
    MachineAction = MachineAction

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
                condition=Q(machine_action__in=MachineAction.values),
                name="campaign_machine_action_valid",
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


def lacks_variable(name: str) -> Q:
    """A contact without a value for the variable ``name``: absent, null or blank, as a
    template line reads it (``templates.rendering.render_line``)."""
    # Key transforms, not lookups built from the name: "a__b" is one key, and a variable
    # may be called "contains". A JSON null is NULL as text on PostgreSQL but "null" on
    # SQLite, hence the comparison as JSON (which SQLite, as Django writes it, also makes
    # true for the text "null": the embedded default counts such a value as missing).
    text = KeyTextTransform(name, "variables")
    json_null = KeyTransformExact(KeyTransform(name, "variables"), Value(None, JSONField()))
    return Q(IsNull(text, True)) | Q(json_null) | Q(Regex(text, r"^\s*$"))


class ContactQuerySet(models.QuerySet):
    def lacking(self, name: str) -> ContactQuerySet:
        """Contacts without a value for the variable ``name`` (``lacks_variable``)."""
        return self.filter(lacks_variable(name))

    def with_campaign(self) -> ContactQuerySet:
        """With the campaign, its partner and template: what eligibility reads."""
        return self.select_related("campaign__partner", "campaign__template")

    def calling_in(self, *, phone: str, number: str) -> ContactQuerySet:
        """The contacts with ``phone`` in campaigns that call from ``number`` and have a
        template: who is ringing ``number`` from ``phone``. The one we called last comes
        first (``last_called_at``), then the newest contact."""
        campaigns = Campaign.objects.calling_from(number).filter(template__isnull=False)
        return (
            self.filter(phone=phone, campaign__in=campaigns)
            .annotate(last_called_at=Max("calls__dialed_at", filter=Q(calls__direction="outbound")))
            .order_by(F("last_called_at").desc(nulls_last=True), "-pk")
        )

    def due(self, now: datetime.datetime) -> ContactQuerySet:
        """Contacts waiting for a call whose time has come: a first call (unless it was put
        off until ``next_attempt_at``) or a retry."""
        return self.filter(
            Q(state=Contact.State.PENDING, next_attempt_at__isnull=True)
            | Q(state__in=[Contact.State.PENDING, Contact.State.RETRY], next_attempt_at__lte=now)
        )


class ContactState(models.TextChoices):
    PENDING = "pending", _("Pending")
    CALLING = "calling", _("Calling")
    RETRY = "retry", _("Retry scheduled")
    DONE = "done", _("Done")
    FAILED = "failed", pgettext_lazy("contact state", "Failed")
    EXHAUSTED = "exhausted", _("Attempts exhausted")
    OPTED_OUT = "opted_out", _("Opted out")


class Contact(models.Model):
    """A person to call in one campaign, with the variables the template speaks."""

    State = ContactState

    # The state machine: which states each state may move to (campaigns.services.contacts
    # makes the moves). A contact waits (pending, retry), is called, and ends done, failed
    # or exhausted; ringing us back reopens an ended one. Staying put is a move where a
    # service rewrites the reason (a contact put off, an opt-out said twice). An opt-out
    # stands whatever happens after it.
    TRANSITIONS: dict[str, frozenset[str]] = {
        State.PENDING: frozenset(
            {
                State.PENDING,
                State.CALLING,
                State.RETRY,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.RETRY: frozenset(
            {
                State.RETRY,
                State.CALLING,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.CALLING: frozenset(
            {
                State.PENDING,
                State.RETRY,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.DONE: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.FAILED: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.EXHAUSTED: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.OPTED_OUT: frozenset({State.OPTED_OUT}),
    }

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="contacts"
    )
    phone = models.CharField(_("phone"), max_length=16, validators=[e164_validator])
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("IANA zone; empty: derived from the phone number."),
    )
    variables = models.JSONField(_("variables"), default=dict, blank=True)
    external_id = models.CharField(_("external id"), max_length=200, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.PENDING)
    state_reason = models.CharField(_("state reason"), max_length=500, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["campaign", "id"]
        indexes = [
            models.Index(fields=["campaign", "state", "next_attempt_at"], name="contact_due_idx"),
            # Equal numbers, and a number's start (LIKE '+34600%'): the operator class lets
            # PostgreSQL use the index for both whatever the collation (ignored elsewhere).
            models.Index(
                fields=["phone"], name="contact_phone_idx", opclasses=["varchar_pattern_ops"]
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "phone"], name="contact_unique_phone_per_campaign"
            ),
            models.UniqueConstraint(
                fields=["campaign", "external_id"],
                condition=~Q(external_id=""),
                name="contact_unique_external_id_per_campaign",
            ),
            models.CheckConstraint(condition=Q(phone__regex=E164_REGEX), name="contact_phone_e164"),
            models.CheckConstraint(
                condition=Q(state__in=ContactState.values),
                name="contact_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(state=ContactState.RETRY) | Q(next_attempt_at__isnull=False),
                name="contact_retry_has_time",
            ),
        ]

    def __str__(self) -> str:
        return self.phone

    def can_move_to(self, state: str) -> bool:
        return state in self.TRANSITIONS[self.state]

    @classmethod
    def states_moving_to(cls, state: str) -> list[str]:
        """The states the table lets a contact leave for ``state``, in the enum's order."""
        return [origin for origin in cls.State.values if state in cls.TRANSITIONS[origin]]


class DoNotCallQuerySet(models.QuerySet):
    def blocking(self, *, partner: Partner, phone: str) -> DoNotCallQuerySet:
        """Entries that forbid calling ``phone`` for ``partner``: its own and global ones."""
        return self.filter(Q(partner=partner) | Q(partner__isnull=True), phone=phone)


class DoNotCallSource(models.TextChoices):
    STAFF = "staff", _("Staff")
    PARTNER_API = "partner_api", _("Partner API")
    OPT_OUT = "opt_out", _("Opt-out during a call")
    IMPORT = "import", _("Import")


class DoNotCall(models.Model):
    """A number that must not be called: by one partner, or by anyone (global)."""

    Source = DoNotCallSource

    partner = models.ForeignKey(
        Partner,
        verbose_name=_("partner"),
        on_delete=models.CASCADE,
        related_name="do_not_call_entries",
        null=True,
        blank=True,
        help_text=_("Empty: a global entry that no partner may call."),
    )
    phone = models.CharField(_("phone"), max_length=16, validators=[e164_validator])
    source = models.CharField(_("source"), max_length=16, choices=Source, default=Source.STAFF)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = DoNotCallQuerySet.as_manager()

    class Meta:
        verbose_name = _("do-not-call entry")
        verbose_name_plural = _("do-not-call list")
        ordering = ["-created_at"]
        # The staff console's list, newest first, and a number or its start looked up
        # across partners (the unique constraints lead with the partner).
        indexes = [
            models.Index(fields=["created_at"], name="donotcall_created_idx"),
            models.Index(
                fields=["phone"], name="donotcall_phone_idx", opclasses=["varchar_pattern_ops"]
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "phone"],
                condition=Q(partner__isnull=False),
                name="donotcall_unique_per_partner",
            ),
            models.UniqueConstraint(
                fields=["phone"],
                condition=Q(partner__isnull=True),
                name="donotcall_unique_global",
            ),
            models.CheckConstraint(
                condition=Q(phone__regex=E164_REGEX), name="donotcall_phone_e164"
            ),
            models.CheckConstraint(
                condition=Q(source__in=DoNotCallSource.values),
                name="donotcall_source_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.phone


class PartnerMember(models.Model):
    """A user who acts for exactly one partner in the API (staff act across partners)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="partner_membership",
    )
    partner = models.ForeignKey(
        Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="members"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("partner user")
        verbose_name_plural = _("partner users")
        ordering = ["partner", "user"]

    def __str__(self) -> str:
        return str(self.user)


class PartnerApiKey(AbstractAPIKey):
    """A server-to-server key acting for one partner: shown once, stored hashed, revocable."""

    partner = models.ForeignKey(
        Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="api_keys"
    )
    # The library's fields again, with translated labels.
    name = models.CharField(_("name"), max_length=50)
    revoked = models.BooleanField(
        _("revoked"),
        blank=True,
        default=False,
        help_text=_("A revoked key can no longer be used; this cannot be undone."),
    )
    expiry_date = models.DateTimeField(
        _("expires"),
        blank=True,
        null=True,
        help_text=_("After this moment the key can no longer be used."),
    )
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    can_manage_access = models.BooleanField(
        _("may manage access"),
        default=False,
        help_text=_(
            "Scope “can_manage_access”: the key may list, create and revoke the partner's "
            "API keys and manage its webhook endpoints. Without it only a partner user "
            "(logged in) may."
        ),
    )
    # A key made with another key ends with it: revoking (or deleting) the parent
    # revokes (or deletes) every key it made, so a leaked key cannot leave heirs behind.
    created_by_key = models.ForeignKey(
        "self",
        verbose_name=_("created by key"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="created_keys",
        help_text=_("The API key that made this one; revoking it revokes this one too."),
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")


class TokenVersion(models.Model):
    """How many times a user ended their API tokens (logout): each JWT carries the
    number it was issued under and is refused once the number has moved on."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="token_version",
    )
    version = models.PositiveIntegerField(_("version"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("token version")
        verbose_name_plural = _("token versions")
        ordering = ["user"]

    def __str__(self) -> str:
        return f"{self.user} v{self.version}"


class IdempotencyKey(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed for repeats."""

    scope = models.CharField(_("scope"), max_length=64)
    key = models.CharField(_("key"), max_length=255)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True)
    response_body = models.JSONField(_("response body"), null=True)
    response_headers = models.JSONField(_("response headers"), default=dict)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotencykey_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]

    def __str__(self) -> str:
        return self.key


class ContactImportState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", pgettext_lazy("import state", "Done")
    FAILED = "failed", pgettext_lazy("import state", "Failed")


class ContactImport(models.Model):
    """One upload of contacts into a campaign: its progress, counts and rejected rows."""

    State = ContactImportState

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="imports"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/", blank=True)
    file_name = models.CharField(_("file name"), max_length=255, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.QUEUED)
    failure_reason = models.CharField(_("failure reason"), max_length=500, blank=True)
    total_rows = models.PositiveIntegerField(_("rows"), null=True, blank=True)
    processed_rows = models.PositiveIntegerField(_("processed rows"), default=0)
    created_count = models.PositiveIntegerField(_("contacts created"), default=0)
    merged_count = models.PositiveIntegerField(_("contacts merged"), default=0)
    error_count = models.PositiveIntegerField(_("rejected rows"), default=0)
    # Kept rows whose contact lacks a variable the campaign's template needed at the import.
    flagged_count = models.PositiveIntegerField(_("rows kept that cannot be called"), default=0)
    missing_variables = models.JSONField(
        _("missing variables"),
        default=dict,
        blank=True,
        help_text=_("Each variable the call template needs, with the rows kept without it."),
    )
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("contact import")
        verbose_name_plural = _("contact imports")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=ContactImportState.values),
                name="contactimport_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.file_name or str(self.pk)


class ImportRowNote(models.Model):
    """What an import says of one of its rows: where, which field, the value and what."""

    row = models.PositiveIntegerField(_("row"))
    field = models.CharField(_("field"), max_length=200, blank=True)
    value = models.TextField(_("value"), blank=True)
    message = models.CharField(_("message"), max_length=500)

    class Meta:
        abstract = True
        ordering = ["contact_import", "row", "id"]

    def __str__(self) -> str:
        return f"{self.row}: {self.message}"


class ContactImportError(ImportRowNote):
    """One rejected row of an import: where, which field, the value and what is wrong."""

    contact_import = models.ForeignKey(
        ContactImport,
        verbose_name=_("import"),
        on_delete=models.CASCADE,
        related_name="row_errors",
    )

    class Meta(ImportRowNote.Meta):
        verbose_name = _("rejected row")
        verbose_name_plural = _("rejected rows")


class ContactImportWarning(ImportRowNote):
    """One kept row of an import whose contact cannot be called as it is: the variable the
    call template needs that it lacks (``field``), and the value it has (blank, or none)."""

    contact_import = models.ForeignKey(
        ContactImport,
        verbose_name=_("import"),
        on_delete=models.CASCADE,
        related_name="row_warnings",
    )

    class Meta(ImportRowNote.Meta):
        verbose_name = _("row kept with a warning")
        verbose_name_plural = _("rows kept with a warning")


class WebhookEvent(models.TextChoices):
    CALL_COMPLETED = "call.completed", "call.completed"
    CALL_PRICED = "call.priced", "call.priced"
    CONTACT_OPTED_OUT = "contact.opted_out", "contact.opted_out"
    CAMPAIGN_COMPLETED = "campaign.completed", "campaign.completed"
    IMPORT_COMPLETED = "import.completed", "import.completed"


def webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def validate_webhook_events(value: Any) -> None:
    """A non-empty list of known event types, each once."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError(_("Choose at least one event."), code="no_events")
    unknown = sorted(set(value) - set(WebhookEvent.values))
    if unknown:
        raise ValidationError(
            _("Unknown events: %(events)s."),
            code="unknown_events",
            params={"events": ", ".join(unknown)},
        )
    if len(set(value)) != len(value):
        raise ValidationError(_("Each event may be listed once."), code="duplicate_events")


class WebhookEndpointQuerySet(models.QuerySet):
    def for_partner(self, partner: Partner) -> WebhookEndpointQuerySet:
        return self.filter(partner=partner)

    def active(self) -> WebhookEndpointQuerySet:
        return self.filter(is_active=True)


class WebhookEndpoint(models.Model):
    """A partner's URL that receives signed events of the types it subscribed to."""

    partner = models.ForeignKey(
        Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="webhooks"
    )
    # Events are POSTed over HTTP(S) only (URLField alone also accepts ftp).
    url = models.URLField(
        _("URL"), max_length=500, validators=[URLValidator(schemes=["http", "https"])]
    )
    secret = models.CharField(_("secret"), max_length=100, default=webhook_secret)
    events = models.JSONField(_("events"), default=list, validators=[validate_webhook_events])
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["partner", "id"]

    def __str__(self) -> str:
        return self.url


class WebhookDeliveryState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", pgettext_lazy("delivery state", "Failed")


class WebhookDeliveryQuerySet(models.QuerySet):
    def due(self, now: datetime.datetime) -> WebhookDeliveryQuerySet:
        """Pending deliveries whose next attempt (or expired claim) has come."""
        return self.filter(state=WebhookDeliveryState.PENDING).filter(
            Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True)
        )


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one endpoint, with every attempt's result."""

    State = WebhookDeliveryState

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        verbose_name=_("endpoint"),
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    event_id = models.UUIDField(_("event id"))
    event_type = models.CharField(_("event"), max_length=32, choices=WebhookEvent)
    payload = models.JSONField(_("payload"))
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(
        _("last status code"), null=True, blank=True
    )
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    attempt_log = models.JSONField(_("attempts log"), default=list, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due_idx"),
            # The staff console's list: newest first, filtered by state, found by event id.
            models.Index(fields=["created_at"], name="delivery_created_idx"),
            models.Index(fields=["state", "created_at"], name="delivery_state_created_idx"),
            models.Index(fields=["event_id"], name="delivery_event_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="delivery_unique_event_per_endpoint"
            ),
            models.CheckConstraint(
                condition=Q(state__in=WebhookDeliveryState.values),
                name="delivery_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id}"
