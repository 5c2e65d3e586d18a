"""A partner's webhook endpoints and their deliveries in the API."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from callcenter.api import PartnerOwnedSerializer
from campaigns import deliveries
from campaigns.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


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
