"""The partner API's data-subject requests: what is asked, and what it came to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from callcenter.access import partner_of
from campaigns.models import Partner
from campaigns.phones import normalize_phone
from privacy.models import DataSubjectRequest


class DataSubjectRequestSerializer(serializers.ModelSerializer):
    """An export or erasure: its state, and the counts of what it found or removed."""

    # Plain strings in the schema: an enum named "status" collides with other resources'.
    kind = serializers.CharField(read_only=True, help_text=_("export or erase."))
    status = serializers.CharField(
        read_only=True, help_text=_("running, recordings_pending, done or failed.")
    )

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "kind",
            "status",
            "partner",
            "subject",
            "counts",
            "pending_recordings",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "subject": {"help_text": _("The number's keyed hash: the number is never kept.")},
            "pending_recordings": {
                "help_text": _("Erasure: calls whose recording the carrier has not deleted yet.")
            },
        }


class SubjectInputSerializer(serializers.Serializer):
    """A phone number, in any usual format, and for staff whose data (default: all)."""

    phone = serializers.CharField(max_length=64)
    region = serializers.CharField(
        min_length=2,
        max_length=2,
        required=False,
        help_text=_("Region (ISO 3166) to read a number without a country code in."),
    )
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("Staff only: whose data; empty, every partner's. Partners: their own."),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        acting = partner_of(self.context["request"])
        attrs.setdefault("partner", None)
        if acting is not None:
            if attrs.get("partner") not in (None, acting):
                raise serializers.ValidationError(
                    {"partner": _("A partner acts on its own data only.")}
                )
            attrs["partner"] = acting
        region = (attrs.pop("region", "") or settings.DEFAULT_PHONE_REGION).upper()
        try:
            attrs["phone"] = normalize_phone(attrs["phone"], region=region)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"phone": exc.messages}) from exc
        return attrs


class EraseInputSerializer(SubjectInputSerializer):
    """An erasure cannot be undone: ``confirm`` must be true."""

    confirm = serializers.BooleanField(
        help_text=_("Must be true: erasing cannot be undone."),
    )

    def validate_confirm(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError(_("Confirm the erasure: it cannot be undone."))
        return value
