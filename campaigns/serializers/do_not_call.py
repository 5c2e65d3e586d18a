"""The partner API's do-not-call list: entries, added one by one or in bulk."""

from __future__ import annotations

from typing import Any

import phonenumbers
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from callcenter.access import partner_of
from campaigns.models import DoNotCall, Partner
from campaigns.serializers.contacts import MAX_BATCH_ITEMS


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
