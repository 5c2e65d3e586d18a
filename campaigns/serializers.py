"""The partner API's view of partners, keys, campaigns, contacts and do-not-call lists."""

from __future__ import annotations

from typing import Any

import phonenumbers
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse
from rest_framework.utils.serializer_helpers import ReturnList

from callcenter.access import partner_of
from callcenter.api import PartnerOwnedSerializer, PartnerScopedRelatedField
from campaigns import deliveries, limits
from campaigns.eligibility import ReasonCode
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    DoNotCall,
    Partner,
    PartnerApiKey,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from campaigns.phones import PHONE_INPUT_MAX_LENGTH
from templates.models import CallTemplate
from voices.models import Voice

# Most contacts (JSON) or numbers one request may add; a file takes more.
MAX_BATCH_ITEMS = 10_000
# Rejected rows shown with an import; the rest are paged at its errors link.
IMPORT_ERRORS_SHOWN = 20


class PartnerSerializer(serializers.ModelSerializer):
    """A partner with its telephony limits, which staff set in the console."""

    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "is_active",
            *limits.PARTNER_LIMIT_FIELDS,
            "created_at",
        ]
        read_only_fields = fields


class PartnerOnboardingSerializer(serializers.Serializer):
    """Input of ``POST /api/v1/partners/``: the partner and its first user."""

    name = serializers.CharField(max_length=200)
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(
        required=False,
        write_only=True,
        allow_blank=False,
        style={"input_type": "password"},
        help_text=_("Leave out to have a strong one generated and shown once."),
    )


class OnboardedPartnerSerializer(serializers.Serializer):
    """Answer of ``POST /api/v1/partners/``: the only time the key (and a generated
    password) can be read."""

    partner = PartnerSerializer()
    username = serializers.CharField()
    api_key = serializers.CharField()
    password = serializers.CharField(allow_null=True)


class ApiKeySerializer(serializers.ModelSerializer):
    created_by_key: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="prefix",
        read_only=True,
        help_text=_("The prefix of the key that made this one; revoking it revokes this one."),
    )

    class Meta:
        model = PartnerApiKey
        fields = [
            "prefix",
            "name",
            "created",
            "expiry_date",
            "last_used_at",
            "revoked",
            "can_manage_access",
            "created_by_key",
        ]
        read_only_fields = ["prefix", "created", "last_used_at", "revoked"]


class CreatedApiKeySerializer(ApiKeySerializer):
    """A new key, with the key itself: shown this once, never again."""

    key = serializers.CharField(read_only=True)

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


# --- Campaigns ---------------------------------------------------------------------------


class CampaignSerializer(PartnerOwnedSerializer):
    """A campaign and its calling settings. The settings are checked by the model as a
    whole on save (calling windows, retry policy, sandbox personas...), each error on its
    field; state moves go through the start/pause/resume/cancel actions."""

    template = PartnerScopedRelatedField(
        queryset=CallTemplate.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("A call template of the same partner."),
    )
    voice = serializers.PrimaryKeyRelatedField(
        queryset=Voice.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("Empty: the default voice."),
    )
    # Numbers as people write them: the service reads them in phone_region and keeps them
    # in E.164, or names the value it cannot read.
    caller_number = serializers.CharField(
        max_length=PHONE_INPUT_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text=_(
            "The number callees see: E.164 (+34910000000) or as written in phone_region; "
            "answered in E.164; one of the numbers staff allow the partner. Empty: "
            "TWILIO_PHONE_NUMBER."
        ),
    )
    transfer_number = serializers.CharField(
        max_length=PHONE_INPUT_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text=_(
            "Where a callee who asks for a person is put through, written as caller_number; "
            "one of the transfer numbers staff allow the partner."
        ),
    )

    limit_warnings = serializers.SerializerMethodField(
        help_text=_(
            "Where the dialer departs from these settings under the partner's telephony "
            "limits, lowered since they were saved: pacing above a cap is clamped to it; a "
            "caller number, transfer number or compliance profile no longer allowed stops "
            "the campaign from calling."
        )
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "partner",
            "name",
            "state",
            "state_reason",
            "state_changed_at",
            "template",
            "voice",
            "caller_number",
            "phone_region",
            "starts_at",
            "ends_at",
            "compliance_profile",
            "calling_windows",
            "frequency_cap_calls",
            "frequency_cap_hours",
            "ring_timeout_seconds",
            "time_limit_seconds",
            "record_calls",
            "transfer_number",
            "machine_action",
            "max_concurrent_calls",
            "calls_per_second",
            "max_attempts",
            "retry_policy",
            "sandbox_personas",
            "limit_warnings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "state",
            "state_reason",
            "state_changed_at",
            "created_at",
            "updated_at",
        ]
        # The name's uniqueness per partner is checked by the service, on the name.
        validators: list[Any] = []
        extra_kwargs = {
            "compliance_profile": {
                "help_text": _(
                    "The legal calling hours, holidays and caps, in each contact's local "
                    "time: one of the profiles staff allow the partner."
                )
            },
            "max_concurrent_calls": {
                "help_text": _("At most the partner's cap, which also bounds all its campaigns.")
            },
            "calls_per_second": {
                "help_text": _("At most the partner's cap, which also bounds all its campaigns.")
            },
            "max_attempts": {"help_text": _("At most the partner's cap.")},
            "state_reason": {
                "help_text": _(
                    "Why the platform last moved the campaign (paused by a Twilio refusal, "
                    "say), or, for a completed one that placed no call, why nobody was called."
                )
            },
        }

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_limit_warnings(self, campaign: Campaign) -> list[str]:
        return [*limits.dial_problems(campaign=campaign), *limits.clamped_pacing(campaign=campaign)]


class CampaignMoveSerializer(CampaignSerializer):
    """The campaign after a start or resume, with what the move let through."""

    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text=_(
            "What the partner should know though the campaign moved: contacts waiting that "
            "cannot be called (missing variables, do-not-call entries...), counted by reason."
        ),
    )

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "warnings"]
        read_only_fields = fields


# --- Contacts ----------------------------------------------------------------------------


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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ContactInputSerializer(serializers.Serializer):
    """One contact to add: the phone in any usual format (read in the campaign's region
    when it has no country code). A contact with the same external id, or else the same
    phone, is merged into: its variables are updated, no second contact is made."""

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
    """A CSV file of contacts: a phone column, optional time_zone and external_id columns;
    every other column is a variable."""

    file = serializers.FileField()


class ContactUpdateSerializer(serializers.ModelSerializer):
    """What may change on a contact: its variables (replaced as a whole) and time zone."""

    variables = serializers.DictField(required=False)

    class Meta:
        model = Contact
        fields = ["variables", "time_zone"]


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


# --- Do-not-call list --------------------------------------------------------------------


class DoNotCallSerializer(serializers.ModelSerializer):
    partner: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text=_("Null for a global entry (staff only).")
    )

    class Meta:
        model = DoNotCall
        fields = ["id", "phone", "partner", "source", "reason", "created_at"]
        read_only_fields = fields


class DoNotCallOwnerMixin(serializers.Serializer):
    """Whose list the numbers go on: a partner's own; staff name a partner, or say
    ``"global": true`` for an entry no partner may call."""

    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(),
        required=False,
        help_text=_("Staff only: whose list. Partners always add to their own."),
    )
    # "global" is a Python keyword, hence the source.
    is_global = serializers.BooleanField(
        required=False,
        default=False,
        help_text=_("Staff only: no partner may call the number."),
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    region = serializers.CharField(
        min_length=2,
        max_length=2,
        required=False,
        help_text=_("Region (ISO 3166) to read numbers without a country code in."),
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["global"] = fields.pop("is_global")
        fields["global"].source = "is_global"
        return fields

    def validate_region(self, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise serializers.ValidationError(
                _("“%(value)s” is not a region code such as ES.") % {"value": value}
            )
        return value.upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        acting = partner_of(self.context["request"])
        given, is_global = attrs.pop("partner", None), attrs.pop("is_global")
        if acting is not None:
            if is_global:
                raise serializers.ValidationError(
                    {"global": _("Only staff can add global entries.")}
                )
            if given is not None and given != acting:
                raise serializers.ValidationError(
                    {"partner": _("You can only add numbers to your own list.")}
                )
            attrs["partner"] = acting
        elif is_global == (given is not None):
            raise serializers.ValidationError(
                {"partner": _('Staff must either name a partner or send "global": true.')}
            )
        else:
            attrs["partner"] = given
        return super().validate(attrs)


class DoNotCallInputSerializer(DoNotCallOwnerMixin):
    """A number to put on a do-not-call list, in any usual format."""

    phone = serializers.CharField(max_length=64)


class DoNotCallBulkSerializer(DoNotCallOwnerMixin):
    """Numbers to put on a do-not-call list; a bare JSON array of numbers also does."""

    phones = serializers.ListField(
        child=serializers.CharField(max_length=64, allow_blank=True),
        allow_empty=False,
        max_length=MAX_BATCH_ITEMS,
    )


class NumberErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    value = serializers.CharField(allow_blank=True)
    message = serializers.CharField()


class DoNotCallBatchSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField(
        help_text=_("Numbers already on the list (or repeated in the request).")
    )
    # A declared field: DRF's metaclass takes it off the class, Serializer.errors stays.
    errors = NumberErrorSerializer(many=True)  # type: ignore[assignment]


class WebhookEndpointSerializer(PartnerOwnedSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        allow_empty=False,
        help_text=_("The event types sent to this URL."),
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "partner",
            "url",
            "events",
            "description",
            "is_active",
            "secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["secret", "created_at", "updated_at"]
        extra_kwargs = {
            "secret": {"help_text": _("Signs every delivery: see docs/webhooks.md.")},
        }

    def validate_events(self, events: list[str]) -> list[str]:
        return list(dict.fromkeys(events))

    def create(self, validated_data: dict[str, Any]) -> WebhookEndpoint:
        is_active = validated_data.pop("is_active", True)
        endpoint = deliveries.create_webhook_endpoint(**validated_data)
        if not is_active:
            endpoint = deliveries.update_webhook_endpoint(endpoint=endpoint, is_active=False)
        return endpoint

    def update(self, instance: WebhookEndpoint, validated_data: dict[str, Any]) -> WebhookEndpoint:
        return deliveries.update_webhook_endpoint(endpoint=instance, **validated_data)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_type",
            "state",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "payload",
            "attempt_log",
        ]
        read_only_fields = fields
