"""The do-not-call lists: a partner's own and the global one."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from campaigns.models.partners import Partner
from campaigns.phones import E164_REGEX, e164_validator


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
