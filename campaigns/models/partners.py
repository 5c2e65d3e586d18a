"""Partners (tenants), the users and API keys that act for them, and their token versions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey

from campaigns.phones import validate_phone_number


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


# The partner's retention periods (days, or empty: kept until deleted), by kind of data.
RETENTION_FIELDS = (
    "transcripts_retention_days",
    "recordings_retention_days",
    "outcomes_retention_days",
    "uploads_retention_days",
)


def retention_days_field(verbose_name: Any, what: Any) -> models.PositiveIntegerField:
    """A retention period in days: at least 1, or empty to keep the data until deleted."""
    return models.PositiveIntegerField(
        verbose_name,
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=format_lazy("{} {}", what, _("Empty: kept until deleted.")),
    )


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
    # Retention: days each kind of data is kept, from the call's end (or the upload); empty
    # keeps it until it is deleted. calls/retention.py and campaigns/retention.py purge.
    transcripts_retention_days = retention_days_field(
        _("keep transcripts (days)"), _("The turns of each call, counted from its end.")
    )
    recordings_retention_days = retention_days_field(
        _("keep recordings (days)"), _("Each call's recording at the carrier, from its end.")
    )
    outcomes_retention_days = retention_days_field(
        _("keep outcomes (days)"),
        _("What each call came to (answers, flags, summary), counted from its end."),
    )
    uploads_retention_days = retention_days_field(
        _("keep uploaded files (days)"),
        _("Contact import files and their rejected rows, counted from the upload."),
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
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": 1}),
                    name=f"partner_{field}_positive",
                )
                for field in RETENTION_FIELDS
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ComplianceProfile(models.TextChoices):
    US = "us", _("United States")
    ES = "es", _("Spain")
    NONE = "none", _("No calling-hour rules")


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
        # The library's Meta names itself with plain strings; Django takes lazy ones too.
        verbose_name = _("API key")  # type: ignore[assignment]
        verbose_name_plural = _("API keys")  # type: ignore[assignment]


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
