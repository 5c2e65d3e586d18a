"""The staff console's forms over contacts, imports and the do-not-call list: they read
what staff type or upload and hand it to the services."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import URLField
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from campaigns import imports, limits, services
from campaigns.egress import url_refusal
from campaigns.models import (
    RETENTION_FIELDS,
    Campaign,
    ContactImport,
    DoNotCall,
    Partner,
    WebhookEndpoint,
)
from campaigns.phones import normalize_phone
from campaigns.serializers import MAX_BATCH_ITEMS

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
# A pasted or uploaded do-not-call list: MAX_BATCH_ITEMS numbers of a few dozen
# characters each, with room for reasons.
DO_NOT_CALL_FILE_MAX_BYTES = 2 * 1024 * 1024
# "612 345 678, asked by email": what follows the first of these is the line's reason.
_REASON_SEPARATOR = re.compile(r"[,;\t]")


class ContactImportForm(forms.ModelForm):
    """A CSV file of contacts for a campaign, checked as a whole before it is stored:
    a CSV file (by its name and content), not empty, within CONTACT_IMPORT_MAX_BYTES,
    with a header naming a phone column. Its rows are checked by the import."""

    # Not the model's ``file``: the import service stores the upload under a name of its own.
    upload = forms.FileField(
        label=_("CSV file"),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.tsv,.txt,text/csv"}),
        help_text=_(
            "The first row names the columns: a phone column (phone, telefono, movil…), "
            "optionally time_zone and external_id; every other column is a variable of the "
            "call script. Separated by commas, semicolons or tabs; UTF-8 or Windows-1252."
        ),
    )

    class Meta:
        model = ContactImport
        fields = ["campaign"]

    def clean_campaign(self) -> Campaign:
        campaign = self.cleaned_data["campaign"]
        try:
            services.check_accepts_contacts(campaign=campaign)
        except services.Refusal as exc:
            raise ValidationError(exc.reasons) from exc
        return campaign

    def clean_upload(self) -> UploadedFile:
        upload = self.cleaned_data["upload"]
        name = Path(upload.name or "").name
        if not name.lower().endswith(CSV_SUFFIXES):
            raise ValidationError(
                _("“%(name)s” is not a CSV file: export the sheet as “CSV UTF-8” (.csv)."),
                code="not_csv",
                params={"name": name},
            )
        if not upload.size:
            raise ValidationError(_("The file is empty."), code="empty")
        if upload.size > settings.CONTACT_IMPORT_MAX_BYTES:
            raise ValidationError(
                _("The file is %(size)s; at most %(max)s can be imported: split it in parts."),
                code="too_big",
                params={
                    "size": filesizeformat(upload.size),
                    "max": filesizeformat(settings.CONTACT_IMPORT_MAX_BYTES),
                },
            )
        try:
            imports.check_csv(upload)
        except imports.ImportFileError as exc:
            raise ValidationError(exc.message, code="invalid_file") from exc
        return upload


class DoNotCallForm(forms.ModelForm):
    """One do-not-call entry, its number typed in any format."""

    # Longer than the E.164 it becomes: "+34 (612) 345-678".
    phone = forms.CharField(label=_("phone"), max_length=40)

    class Meta:
        model = DoNotCall
        fields = ["partner", "phone", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "phone" in self.fields:
            self.fields["phone"].help_text = _(
                "In any format; without a country code it is read as a number of %(region)s."
            ) % {"region": settings.DEFAULT_PHONE_REGION}

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"], region=settings.DEFAULT_PHONE_REGION)


def _https_by_default(field: Any, **kwargs: Any) -> forms.Field | None:
    # A URL typed without a scheme is taken as HTTPS (Django 6's default).
    if isinstance(field, URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class WebhookEndpointForm(forms.ModelForm):
    """A partner's endpoint, its URL checked as the API checks it: a host that does not
    resolve, or resolves to an internal address, is refused (docs/security.md)."""

    class Meta:
        model = WebhookEndpoint
        fields = ["partner", "url", "events", "description", "is_active"]
        formfield_callback = staticmethod(_https_by_default)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        # Checked when it changes: editing the description of an endpoint whose host is
        # down for a moment still works; every attempt checks the URL again anyway.
        if self.instance.pk is None or url != self.instance.url:
            if refusal := url_refusal(url):
                message, code = refusal
                raise ValidationError(message, code=code)
        return url


@dataclass(frozen=True)
class NumberLine:
    """A line of a pasted or uploaded list: where it is (``source``: the box or the
    file), its number there, the number as written and its own reason, if any."""

    source: str
    line: int
    phone: str
    reason: str


@dataclass(frozen=True)
class InvalidLine:
    source: str
    line: int
    value: str
    message: str


@dataclass
class BulkAddition:
    """What adding a list did: entries created, numbers already listed (or repeated),
    and each line whose number could not be read."""

    created: int = 0
    existing: int = 0
    invalid: list[InvalidLine] = field(default_factory=list)


class DoNotCallBulkForm(forms.Form):
    """Numbers for a do-not-call list, pasted one a line or uploaded as a text or CSV
    file, each line a number in any format, optionally followed by a comma, semicolon or
    tab and the line's own reason."""

    GLOBAL, PARTNER = "global", "partner"
    PASTED, FILE = "pasted", "file"

    numbers = forms.CharField(
        label=_("Numbers"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 60, "spellcheck": "false"}),
        help_text=_(
            "One number a line, in any format (612 345 678, +34 612 345 678, 0034…); after "
            "a comma, semicolon or tab, a reason for that number alone."
        ),
    )
    file = forms.FileField(
        label=_("Or a file"),
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv,text/plain"}),
        help_text=_(
            "A text or CSV file with the same lines; a first line without digits (a header) "
            "is skipped."
        ),
    )
    scope = forms.ChoiceField(
        label=_("List"),
        choices=[
            (GLOBAL, _("Global: no partner may call these numbers")),
            (PARTNER, _("One partner's list")),
        ],
        initial=GLOBAL,
        widget=forms.RadioSelect,
    )
    partner = forms.ModelChoiceField(
        label=_("Partner"), queryset=Partner.objects.order_by("name"), required=False
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=DoNotCall._meta.get_field("reason").max_length,
        required=False,
        help_text=_("For every number without a reason of its own."),
    )
    region = forms.ChoiceField(
        label=_("Region"),
        choices=sorted((region, region) for region in phonenumbers.SUPPORTED_REGIONS),
        initial=settings.DEFAULT_PHONE_REGION,
        help_text=_("Numbers without a country code are read as numbers of this region."),
    )

    def clean_file(self) -> list[str] | None:
        upload = self.cleaned_data.get("file")
        if not upload:
            return None
        if upload.size > DO_NOT_CALL_FILE_MAX_BYTES:
            raise ValidationError(
                _("The file is %(size)s; at most %(max)s is read at a time."),
                params={
                    "size": filesizeformat(upload.size),
                    "max": filesizeformat(DO_NOT_CALL_FILE_MAX_BYTES),
                },
            )
        data = upload.read()
        if b"\x00" in data or data.startswith(b"PK\x03\x04"):
            raise ValidationError(
                _("The file is not text: save it as CSV or plain text, one number a line.")
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")  # what Excel writes in Spain
        return text.splitlines()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what clean() returns (the stubs allow None)
        if cleaned.get("scope") == self.PARTNER and not cleaned.get("partner"):
            self.add_error("partner", _("Choose the partner whose list the numbers go on."))
        if cleaned.get("scope") == self.GLOBAL:
            cleaned["partner"] = None
        lines = [
            *_number_lines(self.PASTED, cleaned.get("numbers", "").splitlines(), header=False),
            *_number_lines(self.FILE, cleaned.get("file") or [], header=True),
        ]
        if not lines and not self.errors:
            raise ValidationError(_("Paste at least one number, or choose a file."))
        if len(lines) > MAX_BATCH_ITEMS:
            raise ValidationError(
                _("%(count)d numbers is too many: add at most %(max)d at a time."),
                params={"count": len(lines), "max": MAX_BATCH_ITEMS},
            )
        cleaned["lines"] = lines
        return cleaned

    def add_numbers(self, *, by: User, actor: audit.Actor = audit.SYSTEM) -> BulkAddition:
        """Put the numbers on the chosen list as ``by`` (source: staff); lines with a
        reason of their own are added with that reason."""
        data = self.cleaned_data
        by_reason: dict[str, list[NumberLine]] = {}
        for line in data["lines"]:
            by_reason.setdefault(line.reason or data["reason"], []).append(line)
        addition = BulkAddition()
        with transaction.atomic():
            for reason, lines in by_reason.items():
                batch = services.add_do_not_call_numbers(
                    phones=[line.phone for line in lines],
                    partner=data["partner"],
                    source=DoNotCall.Source.STAFF,
                    reason=reason,
                    by=by,
                    actor=actor,
                    region=data["region"],
                )
                addition.created += batch.created
                addition.existing += batch.existing
                addition.invalid.extend(
                    InvalidLine(
                        lines[error.index].source,
                        lines[error.index].line,
                        error.value,
                        error.message,
                    )
                    for error in batch.errors
                )
        addition.invalid.sort(key=lambda line: (line.source != self.PASTED, line.line))
        return addition


def _number_lines(source: str, lines: list[str], *, header: bool) -> list[NumberLine]:
    """The lines that hold something, numbered from 1 as an editor numbers them."""
    found = []
    reason_max = DoNotCall._meta.get_field("reason").max_length
    for number, text in enumerate(lines, start=1):
        parts = _REASON_SEPARATOR.split(text, maxsplit=1)
        phone = parts[0].strip().strip('"')
        reason = parts[1].strip().strip('"')[:reason_max] if len(parts) > 1 else ""
        if not phone and not reason:
            continue
        if header and number == 1 and not any(char.isdigit() for char in text):
            continue
        found.append(NumberLine(source, number, phone, reason))
    return found


class PhoneListField(forms.CharField):
    """Numbers typed one a line (or separated by commas), as people write them, read in
    DEFAULT_PHONE_REGION when they have no country code; cleaned to a list in E.164."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    # Typed by the stubs as CharField's str: this field's cleaned value is the list.
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        numbers: list[str] = []
        errors = []
        for raw in re.split(r"[\n,;]", super().to_python(value) or ""):
            if not raw.strip():
                continue
            try:
                number = normalize_phone(raw, region=settings.DEFAULT_PHONE_REGION)
            except ValidationError as exc:
                errors.extend(exc.error_list)
                continue
            if number not in numbers:
                numbers.append(number)
        if errors:
            raise ValidationError(errors)
        return numbers


class PartnerForm(forms.ModelForm):
    """A partner with its telephony limits: numbers one a line, profiles ticked."""

    caller_numbers = PhoneListField(
        label=_("caller numbers"),
        required=False,
        help_text=Partner._meta.get_field("caller_numbers").help_text,
    )
    transfer_numbers = PhoneListField(
        label=_("transfer numbers"),
        required=False,
        help_text=Partner._meta.get_field("transfer_numbers").help_text,
    )
    compliance_profiles = forms.MultipleChoiceField(
        label=_("compliance profiles"),
        required=False,
        choices=Campaign.ComplianceProfile.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=Partner._meta.get_field("compliance_profiles").help_text,
    )

    class Meta:
        model = Partner
        fields = ["name", "is_active", *limits.PARTNER_LIMIT_FIELDS, *RETENTION_FIELDS]
