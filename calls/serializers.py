"""The partner API's view of calls: a light row for lists, the whole call for one."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from calls.costs import call_cost
from calls.models import Call, Turn
from calls.reports.serializers import CostSerializer
from campaigns.models import Contact

# Kept for staff (the model's raw answer), never shown to partners: as in call.completed.
PRIVATE_OUTCOME_KEYS = frozenset({"extraction_raw"})


class CallContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "phone", "external_id", "state"]
        read_only_fields = fields


class TurnSerializer(serializers.ModelSerializer):
    speaker = serializers.CharField(
        source="role", help_text=_("agent (us), caller (the callee) or system.")
    )

    class Meta:
        model = Turn
        fields = [
            "sequence",
            "speaker",
            "text",
            "digits",
            "confidence",
            "started_at",
            "ended_at",
            "latency_ms",
            "model_ms",
            "speech_ms",
        ]
        read_only_fields = fields


class CallSerializer(serializers.ModelSerializer):
    """A call in a list: what happened, without what was said."""

    contact = CallContactSerializer(read_only=True)
    direction = serializers.CharField(
        read_only=True,
        help_text=_(
            "outbound: we called the contact (from_number is ours); inbound: the contact "
            "rang one of our numbers back (to_number is ours, attempt is null)."
        ),
    )
    started_at = serializers.DateTimeField(
        source="dialed_at",
        read_only=True,
        allow_null=True,
        help_text=_("When it was dialled (an inbound call: when it was answered)."),
    )
    outcome = serializers.SerializerMethodField(
        help_text=_(
            "The fields the template's outcome schema asks for, plus opted_out, "
            "transferred, transfer_failed and extraction_failed when they apply."
        )
    )
    cost = serializers.SerializerMethodField(
        help_text=_("What the call cost: telephony, speech and the model, and what is pending.")
    )

    class Meta:
        model = Call
        fields = [
            "id",
            "campaign",
            "contact",
            "direction",
            "attempt",
            "status",
            "answered_by",
            "from_number",
            "to_number",
            "started_at",
            "answered_at",
            "ended_at",
            "duration_seconds",
            "price",
            "price_unit",
            "price_status",
            "cost",
            "outcome",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_outcome(self, call: Call) -> dict[str, Any]:
        return {k: v for k, v in call.outcome.items() if k not in PRIVATE_OUTCOME_KEYS}

    @extend_schema_field(CostSerializer)
    def get_cost(self, call: Call) -> dict[str, Any]:
        # The view counts the costs of a page of calls at once (calls.costs.call_costs).
        costs = self.context.get("costs")
        cost = costs[call.pk] if costs and call.pk in costs else call_cost(call)
        return cost.as_dict()


class CallDetailSerializer(CallSerializer):
    """One call: also its summary, transcript with timings, errors and recording."""

    turns = TurnSerializer(many=True, read_only=True)
    recording_url = serializers.SerializerMethodField(
        help_text=_("Where to fetch the recording (with the same credentials); null: none.")
    )

    class Meta(CallSerializer.Meta):
        fields = [
            *CallSerializer.Meta.fields,
            "error_code",
            "error_message",
            "summary",
            "recording_url",
            "recording_seconds",
            "rules_version",
            "turns",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_recording_url(self, call: Call) -> str | None:
        if not call.recording_url:
            return None
        path = reverse("call-recording", kwargs={"pk": call.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path
