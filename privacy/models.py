"""Data-subject requests: an export or an erasure of everything held about a number, as
staff or a partner asked for it. The number itself is never kept, only its keyed hash."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from campaigns.models import Partner


class RequestKind(models.TextChoices):
    EXPORT = "export", _("Export")
    ERASE = "erase", _("Erasure")


class RequestStatus(models.TextChoices):
    # An export being built in the background.
    RUNNING = "running", _("Running")
    # An erasure done in the database whose recordings are still to be deleted at the
    # carrier (it was unavailable): privacy.tasks retries until none is left.
    RECORDINGS_PENDING = "recordings_pending", _("Recordings still to delete")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class DataSubjectRequest(models.Model):
    """One export or erasure of the data about a number, for one partner (``partner``) or
    every partner (empty: staff only), with who asked, what it found and where it stands."""

    Kind = RequestKind
    Status = RequestStatus

    kind = models.CharField(_("kind"), max_length=8, choices=RequestKind)
    status = models.CharField(
        _("status"), max_length=24, choices=RequestStatus, default=RequestStatus.RUNNING
    )
    partner = models.ForeignKey(
        Partner,
        verbose_name=_("partner"),
        on_delete=models.CASCADE,
        related_name="data_subject_requests",
        null=True,
        blank=True,
        help_text=_("Empty: every partner's data."),
    )
    subject = models.CharField(
        _("keyed hash of the number"),
        max_length=64,
        help_text=_(
            "The number as the audit trail's keyed hash (AUDIT_KEY): never the number itself."
        ),
    )
    # Who asked, as the audit trail names them (audit.services.Actor): the export is
    # downloadable by the same requester only.
    actor_type = models.CharField(_("requested by (kind)"), max_length=16)
    actor_id = models.CharField(_("requested by (id)"), max_length=64, blank=True)
    actor_name = models.CharField(_("requested by"), max_length=200, blank=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    # An erasure's calls whose recording the carrier has not yet deleted (ids).
    pending_recordings = models.JSONField(_("recordings to delete"), default=list, blank=True)
    recording_attempts = models.PositiveIntegerField(_("recording deletion attempts"), default=0)
    # When the recordings still listed are tried again (the beat's tick picks it then).
    recordings_retry_at = models.DateTimeField(
        _("recordings tried again at"), null=True, blank=True
    )
    file = models.FileField(_("file"), upload_to="private/subject-exports/", blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("data-subject request")
        verbose_name_plural = _("data-subject requests")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=RequestKind.values), name="datasubjectrequest_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RequestStatus.values),
                name="datasubjectrequest_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.subject[:12]}"
