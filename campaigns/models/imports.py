"""Contact imports: one upload's progress and counts, and the notes on its rows."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.models.campaigns import Campaign


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
