"""Contacts in the partner API (listed, added one by one, in batches or by file, with their
eligibility) and the imports of contact files."""

from __future__ import annotations

import datetime

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse
from rest_framework.utils.serializer_helpers import ReturnList

from campaigns.eligibility import ReasonCode
from campaigns.models import (
    BASIS_FIELDS,
    Contact,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    LegalBasis,
    legal_basis_problems,
    parse_moment,
)

# Most contacts (JSON) or numbers one request may add; a file takes more.
MAX_BATCH_ITEMS = 10_000
# Rejected rows shown with an import; the rest are paged at its errors link.
IMPORT_ERRORS_SHOWN = 20


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = [
            "id",
            "campaign",
            "phone",
            "time_zone",
            "variables",
            "external_id",
            "state",
            "state_reason",
            "attempts",
            "next_attempt_at",
            *BASIS_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class BasisMomentField(serializers.DateTimeField):
    """An ISO 8601 date or date and time; without an offset, in the project's time zone
    (``parse_moment``)."""

    def to_internal_value(self, value: datetime.datetime | str) -> datetime.datetime:
        if isinstance(value, str):
            try:
                return parse_moment(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc), code="invalid") from exc
        return super().to_internal_value(value)


class BasisFieldsMixin(serializers.Serializer):
    """The legal basis fields, checked together (``legal_basis_problems``): consent needs
    when, where and in which words it was given; it expires after it was obtained."""

    legal_basis = serializers.ChoiceField(
        choices=LegalBasis.choices,
        required=False,
        allow_blank=True,
        help_text=_(
            "consent, customer (an existing customer relationship) or service (a "
            "non-marketing call); empty: none. A marketing campaign calls only contacts whose "
            "basis its compliance profile accepts."
        ),
    )
    basis_source = serializers.CharField(max_length=500, required=False, allow_blank=True)
    basis_obtained_at = BasisMomentField(required=False, allow_null=True)
    basis_wording = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    basis_scope = serializers.CharField(max_length=500, required=False, allow_blank=True)
    basis_expires_at = BasisMomentField(required=False, allow_null=True)
    basis_withdrawn_at = BasisMomentField(required=False, allow_null=True)

    def basis_values(self, attrs: dict[str, object]) -> dict[str, object]:
        """The basis the contact will have: the given fields over what it has (an update)
        or nothing (a new basis replaces the old one as a whole)."""
        current = (
            {name: getattr(self.instance, name) for name in BASIS_FIELDS}
            if isinstance(self.instance, Contact)
            else {}
        )
        return {**current, **{name: attrs[name] for name in BASIS_FIELDS if name in attrs}}

    def validate(self, attrs: dict[str, object]) -> dict[str, object]:
        if any(name in attrs for name in BASIS_FIELDS):
            problems = legal_basis_problems(self.basis_values(attrs))
            if problems:
                raise serializers.ValidationError(
                    {
                        name: [str(error.message % (error.params or {})) for error in errors]
                        for name, errors in problems.items()
                    }
                )
        return attrs


class ContactInputSerializer(BasisFieldsMixin, serializers.Serializer):
    """One contact to add: the phone in any usual format (read in the campaign's region
    when it has no country code). A contact with the same external id, or else the same
    phone, is merged into: its variables are updated, no second contact is made; basis
    fields given replace its legal basis as a whole."""

    phone = serializers.CharField(max_length=64)
    time_zone = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("IANA zone; empty: derived from the phone number."),
    )
    variables = serializers.DictField(
        required=False,
        default=dict,
        help_text=_('What the template speaks, e.g. {"first_name": "Lucía"}.'),
    )
    external_id = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )


class ContactUploadSerializer(serializers.Serializer):
    """A CSV file of contacts: a phone column, optional time_zone, external_id and legal
    basis columns; every other column is a variable."""

    file = serializers.FileField()


class ContactUpdateSerializer(BasisFieldsMixin, serializers.ModelSerializer):
    """What may change on a contact: its variables (replaced as a whole), time zone and
    legal basis fields (each given one replaced)."""

    variables = serializers.DictField(required=False)

    class Meta:
        model = Contact
        fields = ["variables", "time_zone", *BASIS_FIELDS]


class ReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[code.value for code in ReasonCode])
    message = serializers.CharField()
    until = serializers.DateTimeField(
        allow_null=True, help_text=_("When this reason alone clears; null: not with time.")
    )


class EligibilitySerializer(serializers.Serializer):
    dialable = serializers.BooleanField(help_text=_("Whether the contact may be called now."))
    reasons = ReasonSerializer(many=True, help_text=_("Every reason against calling now."))
    next_possible_at = serializers.DateTimeField(
        allow_null=True,
        help_text=_(
            "The earliest moment every reason clears by itself (now when dialable); null "
            "when one never clears with time alone."
        ),
    )
    rules_version = serializers.CharField()


class ContactDetailSerializer(ContactSerializer):
    """A contact with whether it may be called now, why not and when."""

    eligibility = EligibilitySerializer(read_only=True)

    class Meta(ContactSerializer.Meta):
        fields = [*ContactSerializer.Meta.fields, "eligibility"]
        read_only_fields = fields


# --- Imports -----------------------------------------------------------------------------


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        help_text=_(
            "The row: in a file, as a spreadsheet numbers it (the header is row 1); in a "
            "JSON list, its position counting from 1."
        )
    )
    field = serializers.CharField(allow_blank=True)
    value = serializers.CharField(allow_blank=True)
    message = serializers.CharField()


class ImportResultSerializer(serializers.Serializer):
    """Contacts added at once (a JSON list or a small file): good rows are imported, the
    others listed."""

    total_rows = serializers.IntegerField()
    created = serializers.IntegerField()
    merged = serializers.IntegerField(
        help_text=_(
            "Rows that matched an existing contact or an earlier row (same external id, or "
            "else the same phone): their variables were merged."
        )
    )
    rejected = serializers.IntegerField(help_text=_("Rows not imported; errors says why."))
    # A declared field: DRF's metaclass takes it off the class, Serializer.errors stays.
    errors = RowErrorSerializer(many=True)  # type: ignore[assignment]
    flagged = serializers.IntegerField(
        help_text=_(
            "Rows kept whose contact lacks a variable the call template needs: it is not "
            "called until it has one. warnings names each row and variable."
        )
    )
    missing_variables = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=_('Rows kept without each variable the template needs: {"first_name": 42}.'),
    )
    warnings = RowErrorSerializer(
        many=True, help_text=_("Each kept row's missing variable: its row, the variable, why.")
    )


class ContactImportErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactImportError
        fields = ["row", "field", "value", "message"]
        read_only_fields = fields


class ContactImportWarningSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactImportWarning
        fields = ["row", "field", "value", "message"]
        read_only_fields = fields


class ContactImportSerializer(serializers.ModelSerializer):
    """An upload imported in the background: its state, progress and counts."""

    progress = serializers.SerializerMethodField()
    errors_url = serializers.SerializerMethodField()
    warnings_url = serializers.SerializerMethodField()

    class Meta:
        model = ContactImport
        fields = [
            "id",
            "campaign",
            "file_name",
            "state",
            "failure_reason",
            "total_rows",
            "processed_rows",
            "progress",
            "created_count",
            "merged_count",
            "error_count",
            "errors_url",
            "flagged_count",
            "missing_variables",
            "warnings_url",
            "started_at",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "number",
            "nullable": True,
            "description": "processed_rows / total_rows, 0 to 1; null until the rows are counted.",
        }
    )
    def get_progress(self, contact_import: ContactImport) -> float | None:
        if not contact_import.total_rows:
            return 1.0 if contact_import.state == ContactImport.State.DONE else None
        return round(contact_import.processed_rows / contact_import.total_rows, 4)

    @extend_schema_field(OpenApiTypes.URI)
    def get_errors_url(self, contact_import: ContactImport) -> str:
        return reverse(
            "contact-import-errors",
            kwargs={"pk": contact_import.pk},
            request=self.context.get("request"),
        )

    @extend_schema_field(OpenApiTypes.URI)
    def get_warnings_url(self, contact_import: ContactImport) -> str:
        return reverse(
            "contact-import-warnings",
            kwargs={"pk": contact_import.pk},
            request=self.context.get("request"),
        )


class ContactImportDetailSerializer(ContactImportSerializer):
    """An import with its first rejected rows and first rows kept with a warning;
    ``errors_url`` and ``warnings_url`` page through all of them."""

    # A declared field: DRF's metaclass takes it off the class, Serializer.errors stays.
    errors = serializers.SerializerMethodField()  # type: ignore[assignment]
    warnings = serializers.SerializerMethodField()

    class Meta(ContactImportSerializer.Meta):
        fields = [*ContactImportSerializer.Meta.fields, "errors", "warnings"]
        read_only_fields = fields

    @extend_schema_field(ContactImportErrorSerializer(many=True))
    def get_errors(self, contact_import: ContactImport) -> ReturnList:
        shown = contact_import.row_errors.all()[:IMPORT_ERRORS_SHOWN]
        # many=True makes a ListSerializer, whose data is a list (the stubs see one item's).
        return ContactImportErrorSerializer(shown, many=True).data  # type: ignore[return-value]

    @extend_schema_field(ContactImportWarningSerializer(many=True))
    def get_warnings(self, contact_import: ContactImport) -> ReturnList:
        shown = contact_import.row_warnings.all()[:IMPORT_ERRORS_SHOWN]
        # many=True makes a ListSerializer, whose data is a list (the stubs see one item's).
        return ContactImportWarningSerializer(shown, many=True).data  # type: ignore[return-value]
