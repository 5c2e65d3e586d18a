"""National suppression lists (Spain's Lista Robinson, the US National Do Not Call Registry,
others): each list, its imported copies, and their entries stored compactly for tens of
millions of numbers. A refresh loads a new copy beside the live one and then points the list
at it (``campaigns.suppression``), so a lookup never sees half a list."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class SuppressionKind(models.TextChoices):
    """Whose list it is: the compliance profiles require lists by kind."""

    ROBINSON_ES = "robinson_es", _("Lista Robinson (Spain, Adigital)")
    US_DNC = "us_dnc", _("National Do Not Call Registry (US, FTC)")
    OTHER = "other", _("Other")


class SuppressionFormat(models.TextChoices):
    """How the operator delivers the numbers (``campaigns/suppression/parsing.py``)."""

    PLAIN = "plain", _("Plain numbers, one a line")
    SHA256 = "sha256", _("SHA-256 digests in hexadecimal, one a line")


class HashInput(models.TextChoices):
    """What was hashed for a digest: the normalisation of the number before SHA-256. The
    operator's exact reading is not published where we could check it, so a list may accept
    every reading ("any"): a contact is on it when any form's digest is."""

    ANY = "any", _("Any of the forms below")
    E164 = "e164", _("E.164 with the plus (+34600000000)")
    DIGITS = "digits", _("E.164 digits without the plus (34600000000)")
    NATIONAL = "national", _("National number (600000000)")


class SuppressionCopyState(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Importing")
    DONE = "done", _("Live")
    REPLACED = "replaced", _("Replaced by a newer copy")
    FAILED = "failed", _("Failed")


class SuppressionList(models.Model):
    """A national list of numbers not to call for marketing, with the date of its live copy
    (given by staff from the operator's download, not the import time)."""

    Kind = SuppressionKind
    Format = SuppressionFormat
    HashInput = HashInput

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=SuppressionKind)
    file_format = models.CharField(
        _("file format"), max_length=8, choices=SuppressionFormat, default=SuppressionFormat.PLAIN
    )
    hash_input = models.CharField(
        _("hashed form"),
        max_length=8,
        choices=HashInput,
        default=HashInput.ANY,
        help_text=_("Hashed lists only: which form of the number the operator hashed."),
    )
    country_code = models.CharField(
        _("country calling code"),
        max_length=3,
        help_text=_(
            "Digits only (34 for Spain, 1 for the US): added to national numbers in plain "
            "files, and the national form hashed lists may use."
        ),
    )
    is_global = models.BooleanField(
        _("binds every partner"),
        default=True,
        help_text=_(
            "Checked: every partner's marketing campaigns whose profile needs a list of this "
            "kind consult it. Unchecked: kept, but consulted by nobody."
        ),
    )
    current_copy = models.OneToOneField(
        "SuppressionCopy",
        verbose_name=_("live copy"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    refreshed_at = models.DateField(
        _("copy dated"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("The date of the operator's download the live copy holds."),
    )
    entry_count = models.PositiveBigIntegerField(_("entries"), default=0, editable=False)
    imported_at = models.DateTimeField(_("imported at"), null=True, blank=True, editable=False)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("imported by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("national suppression list")
        verbose_name_plural = _("national suppression lists")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=SuppressionKind.values), name="suppressionlist_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(file_format__in=SuppressionFormat.values),
                name="suppressionlist_format_valid",
            ),
            models.CheckConstraint(
                condition=Q(hash_input__in=HashInput.values),
                name="suppressionlist_hash_input_valid",
            ),
            models.CheckConstraint(
                condition=Q(country_code__regex=r"^[1-9][0-9]{0,2}$"),
                name="suppressionlist_country_code_digits",
            ),
        ]

    def __str__(self) -> str:
        return self.name


def suppression_upload_path(instance: SuppressionCopy, filename: str) -> str:
    return f"suppression/{filename}"


class SuppressionCopy(models.Model):
    """One import of a list's file: its counts and bad lines while it loads, then the live
    copy until the next one replaces it (its entries are deleted then)."""

    State = SuppressionCopyState

    suppression_list = models.ForeignKey(
        SuppressionList,
        verbose_name=_("list"),
        on_delete=models.CASCADE,
        related_name="copies",
    )
    refreshed_at = models.DateField(
        _("copy dated"), help_text=_("The date of the operator's download in this file.")
    )
    file = models.FileField(
        _("file"),
        upload_to=suppression_upload_path,
        blank=True,
        help_text=_("Plain or gzip-compressed; a command import reads its files in place."),
    )
    file_name = models.CharField(_("file name"), max_length=255, blank=True)
    state = models.CharField(
        _("state"),
        max_length=16,
        choices=SuppressionCopyState,
        default=SuppressionCopyState.PENDING,
    )
    lines_read = models.PositiveBigIntegerField(_("lines read"), default=0)
    good_lines = models.PositiveBigIntegerField(_("good lines"), default=0)
    bad_lines = models.PositiveBigIntegerField(_("bad lines"), default=0)
    duplicate_lines = models.PositiveBigIntegerField(_("repeated numbers"), default=0)
    entry_count = models.PositiveBigIntegerField(_("entries"), default=0)
    # The first bad lines, as [line number, value, reason]; the count has them all.
    bad_samples = models.JSONField(_("first bad lines"), default=list, blank=True)
    failure_reason = models.TextField(_("failure"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("imported by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    progress_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("suppression list import")
        verbose_name_plural = _("suppression list imports")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=SuppressionCopyState.values),
                name="suppressioncopy_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.suppression_list_id}: {self.refreshed_at}"


# The entries: one narrow table per kind of value, each keyed by (copy, value) so that the
# primary key is the only index (a plain number is 8 bytes, a digest 32). No foreign key
# constraint on the copy: a PostgreSQL COPY of millions of rows would check it row by row;
# the import service writes and deletes a copy's rows itself.


class SuppressionNumber(models.Model):
    """A number on a plain list's copy: the E.164 digits as an integer (+34600000000 is
    34600000000)."""

    pk = models.CompositePrimaryKey("copy", "number")
    copy = models.ForeignKey(
        SuppressionCopy, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    number = models.BigIntegerField()

    class Meta:
        verbose_name = _("suppressed number")
        verbose_name_plural = _("suppressed numbers")

    def __str__(self) -> str:
        return f"+{self.number}"


class SuppressionDigest(models.Model):
    """A hashed list's entry: the SHA-256 digest's 32 bytes."""

    pk = models.CompositePrimaryKey("copy", "digest")
    copy = models.ForeignKey(
        SuppressionCopy, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    digest = models.BinaryField(max_length=32)

    class Meta:
        verbose_name = _("suppressed digest")
        verbose_name_plural = _("suppressed digests")

    def __str__(self) -> str:
        return bytes(self.digest).hex()
