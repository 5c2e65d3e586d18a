"""The partner API's partners (staff) and a partner's API keys."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from campaigns import limits
from campaigns.models import RETENTION_FIELDS, Partner, PartnerApiKey


class PartnerSerializer(serializers.ModelSerializer):
    """A partner with its telephony limits and retention periods (days; null: kept until
    deleted), which staff set in the console."""

    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "is_active",
            *limits.PARTNER_LIMIT_FIELDS,
            *RETENTION_FIELDS,
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
