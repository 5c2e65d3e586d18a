"""Erased numbers: the keyed hash of a number erased at its owner's request, never to be
called again (for one partner, or by anyone)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from audit.keys import subject_hash
from campaigns.models.partners import Partner

# What a contact import or addition says of an erased number (field "phone").
ERASED_NUMBER_MESSAGE = _("This number was erased at its owner's request and may not be called.")


class ErasedNumberQuerySet(models.QuerySet):
    def blocking(self, *, partner_id: int, phone: str) -> ErasedNumberQuerySet:
        """The entries that forbid ``partner_id`` to call ``phone``: its own and global ones."""
        return self.filter(
            Q(partner_id=partner_id) | Q(partner__isnull=True), digest=subject_hash(phone)
        )

    def digests_for(self, *, partner_id: int) -> frozenset[str]:
        """The hashes of every number ``partner_id`` may not call because it was erased."""
        rows = self.filter(Q(partner_id=partner_id) | Q(partner__isnull=True))
        return frozenset(rows.values_list("digest", flat=True))


class ErasedNumber(models.Model):
    """A number erased at its owner's request, kept only as its keyed hash
    (``audit.keys.subject_hash``): eligibility, contact imports and additions refuse it."""

    partner = models.ForeignKey(
        Partner,
        verbose_name=_("partner"),
        on_delete=models.CASCADE,
        related_name="erased_numbers",
        null=True,
        blank=True,
        help_text=_("Empty: erased for every partner."),
    )
    digest = models.CharField(_("keyed hash of the number"), max_length=64)
    erased_at = models.DateTimeField(_("erased at"))

    objects = ErasedNumberQuerySet.as_manager()

    class Meta:
        verbose_name = _("erased number")
        verbose_name_plural = _("erased numbers")
        ordering = ["-erased_at"]
        indexes = [models.Index(fields=["digest"], name="erasednumber_digest_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "digest"],
                condition=Q(partner__isnull=False),
                name="erasednumber_unique_per_partner",
            ),
            models.UniqueConstraint(
                fields=["digest"],
                condition=Q(partner__isnull=True),
                name="erasednumber_unique_global",
            ),
        ]

    def __str__(self) -> str:
        return self.digest[:12]
