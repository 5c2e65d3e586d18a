"""Partners (tenants), their campaigns and contacts, and the do-not-call lists."""

from __future__ import annotations

import datetime
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.phones import E164_REGEX, e164_validator


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("“%(value)s” is not an IANA time zone such as Europe/Madrid."),
            code="invalid_time_zone",
            params={"value": value},
        )


class Partner(models.Model):
    """A tenant: a company that runs campaigns and sees only its own data."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CampaignQuerySet(models.QuerySet):
    def running(self) -> CampaignQuerySet:
        return self.filter(state=Campaign.State.RUNNING)

    def for_partner(self, partner: Partner) -> CampaignQuerySet:
        return self.filter(partner=partner)


# Choices live at module level so that Meta constraints can name their values.
class CampaignState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class Campaign(models.Model):
    """A partner's run of calls to a list of contacts, with a template and a voice."""

    State = CampaignState

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
        validators=[e164_validator],
        help_text=_("Empty: TWILIO_PHONE_NUMBER."),
    )
    phone_region = models.CharField(
        _("phone region"),
        max_length=2,
        default=settings.DEFAULT_PHONE_REGION,
        help_text=_("Region (ISO 3166) used to read contact numbers without a country code."),
    )
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    state_changed_at = models.DateTimeField(_("state changed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]
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
        ]

    def __str__(self) -> str:
        return self.name

    def can_move_to(self, state: str) -> bool:
        return state in self.TRANSITIONS[self.state]

    @property
    def effective_caller_number(self) -> str:
        return self.caller_number or settings.TWILIO_PHONE_NUMBER


class ContactQuerySet(models.QuerySet):
    def due(self, now: datetime.datetime) -> ContactQuerySet:
        """Contacts waiting for a first call, or for a retry whose time has come."""
        return self.filter(
            Q(state=Contact.State.PENDING) | Q(state=Contact.State.RETRY, next_attempt_at__lte=now)
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
            models.Index(fields=["phone"], name="contact_phone_idx"),
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
