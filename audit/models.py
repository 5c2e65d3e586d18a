"""The audit trail's entries and the head of their chain."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Action(models.TextChoices):
    """What an entry records. Decisions about a contact first, then what people did."""

    CONTACT_SELECTED = "contact.selected", _("Contact selected for a call")
    CONTACT_SKIPPED = "contact.skipped", _("Contact skipped")
    CONTACT_DIALED = "contact.dialed", _("Contact dialled")
    CONTACT_OPTED_OUT = "contact.opted_out", _("Contact opted out")
    BASIS_CHANGED = "contact.basis_changed", _("Legal basis changed")
    SUBJECT_EXPORTED = "subject.exported", _("Data exported for a phone number")
    SUBJECT_ERASED = "subject.erased", _("Data erased for a phone number")
    RETENTION_PURGED = "retention.purged", _("Expired data deleted")
    CAMPAIGN_STARTED = "campaign.started", _("Campaign started")
    CAMPAIGN_PAUSED = "campaign.paused", _("Campaign paused")
    CAMPAIGN_RESUMED = "campaign.resumed", _("Campaign resumed")
    CAMPAIGN_CANCELLED = "campaign.cancelled", _("Campaign cancelled")
    CAMPAIGN_COMPLETED = "campaign.completed", _("Campaign completed")
    CAMPAIGN_AUTO_PAUSED = "campaign.auto_paused", _("Campaign paused automatically")
    ABANDONMENT_ALERT = "campaign.abandonment_alert", _("Abandonment rate alert")
    SUPPRESSION_IMPORTED = "suppression.imported", _("Suppression list imported")
    OBJECT_CREATED = "object.created", _("Created")
    OBJECT_CHANGED = "object.changed", _("Changed")
    OBJECT_DELETED = "object.deleted", _("Deleted")


class ActorType(models.TextChoices):
    SYSTEM = "system", _("The platform")
    STAFF = "staff", _("Staff")
    PARTNER = "partner", _("Partner")
    CALLEE = "callee", _("The person called")


class AuditEntry(models.Model):
    """One decision or action, chained to the one before it.

    ``hash`` is a keyed HMAC-SHA256 (AUDIT_KEY) of the entry's fields and ``prev_hash``, the
    hash of the entry with the previous ``seq``: an edit, insertion or deletion made in the
    database breaks the chain where it was made (``manage.py verify_audit``). ``subject`` is
    a keyed hash of the phone number the entry is about, never the number: erasing a
    person's data leaves the trail whole and holds nothing that names them.
    """

    Action = Action
    ActorType = ActorType

    seq = models.PositiveBigIntegerField(_("sequence"), unique=True, editable=False)
    at = models.DateTimeField(_("at"), editable=False, db_index=True)
    action = models.CharField(_("action"), max_length=40, editable=False, db_index=True)
    partner_id = models.BigIntegerField(_("partner id"), null=True, editable=False)
    subject = models.CharField(_("subject (keyed hash)"), max_length=64, blank=True, editable=False)
    object_type = models.CharField(_("object type"), max_length=64, blank=True, editable=False)
    object_id = models.CharField(_("object id"), max_length=64, blank=True, editable=False)
    actor_type = models.CharField(
        _("actor type"), max_length=16, choices=ActorType, default=ActorType.SYSTEM, editable=False
    )
    actor_id = models.CharField(_("actor id"), max_length=64, blank=True, editable=False)
    actor_name = models.CharField(_("actor"), max_length=200, blank=True, editable=False)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True, editable=False)
    details = models.JSONField(_("details"), default=dict, blank=True, editable=False)
    rules_version = models.CharField(_("rules version"), max_length=120, blank=True, editable=False)
    prev_hash = models.CharField(_("previous hash"), max_length=64, editable=False)
    hash = models.CharField(_("hash"), max_length=64, unique=True, editable=False)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        ordering = ["-seq"]
        # Nobody may change or delete an entry through the product: no change or delete
        # permission exists to give (the admin and the API only read).
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["partner_id", "seq"], name="audit_partner_idx"),
            models.Index(fields=["subject", "seq"], name="audit_subject_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_type__in=ActorType.values), name="audit_actor_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Only audit.services.record writes entries, and an entry is never written twice.
        if self.pk is not None:
            raise TypeError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise TypeError("audit entries are append-only")


class AuditHead(models.Model):
    """The chain's last entry (one row): its ``seq`` and ``hash``. Locked by each writer
    until its transaction ends, so entries are numbered and chained in commit order."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"#{self.seq}"
