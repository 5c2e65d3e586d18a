"""The partner API's view of the voice catalogue."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from voices.models import Voice


class VoiceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Voice
        fields = [
            "id",
            "provider_voice_id",
            "name",
            "language",
            "labels",
            "preview_url",
            "settings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class VoiceSyncSerializer(serializers.Serializer):
    """Answer of ``POST /api/v1/voices/sync/``: the sync was queued."""

    message = serializers.CharField(help_text=_("What happens next, for a person."))
