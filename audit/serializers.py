"""The audit trail in the partner API: entries as they are stored, read only."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from audit.models import Action, AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    action_label = serializers.SerializerMethodField(
        help_text=_("The action in words, in the request's language.")
    )

    class Meta:
        model = AuditEntry
        fields = [
            "seq",
            "at",
            "action",
            "action_label",
            "partner_id",
            "subject",
            "object_type",
            "object_id",
            "actor_type",
            "actor_id",
            "actor_name",
            "ip",
            "details",
            "rules_version",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields

    def get_action_label(self, entry: AuditEntry) -> str:
        return str(dict(Action.choices).get(entry.action, entry.action))
