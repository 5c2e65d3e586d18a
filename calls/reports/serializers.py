"""The API's figures of what calls did and cost: a call's cost (the calls endpoint) and a
campaign's stats (``GET /api/v1/campaigns/{id}/stats/``, calls.reports.views)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from calls.models import CallStatus
from calls.reports.stats import CALL_OUTCOMES
from campaigns.models import Contact


class TokensSerializer(serializers.Serializer):
    prompt = serializers.IntegerField()
    completion = serializers.IntegerField()


class CostSerializer(serializers.Serializer):
    """What calls cost (calls.costs.Cost), amounts as decimal strings."""

    currency = serializers.CharField(help_text=_("ISO 4217: the COST_CURRENCY setting."))
    telephony = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text=_("What Twilio charged (its price, known some time after the call)."),
    )
    speech = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text=_("ElevenLabs: the characters played, each clip's shared by its calls."),
    )
    model = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text=_("OpenAI: the tokens of the conversation and of the outcome extraction."),
    )
    total = serializers.DecimalField(max_digits=18, decimal_places=6)
    pending = serializers.ListField(
        child=serializers.CharField(),
        help_text=_("Parts still to be settled: telephony while Twilio has not priced a call yet."),
    )
    unpriced = serializers.ListField(
        child=serializers.CharField(),
        help_text=_(
            "What is left out of the amounts, having no price here: model:<name> or "
            "speech:<model> without a unit price, telephony:<currency> in another "
            "currency, telephony:unavailable when Twilio gave no price."
        ),
    )
    tokens = serializers.DictField(
        child=TokensSerializer(), help_text=_("Model tokens by model: prompt and completion.")
    )
    characters = serializers.DictField(
        child=serializers.DecimalField(max_digits=14, decimal_places=2),
        help_text=_("ElevenLabs characters by speech model (this call's share)."),
    )


def _counts(name: str, keys: list[str], help_text: str) -> type[serializers.Serializer]:
    """A serializer with one count per key, so that the schema names every key."""
    fields = {key: serializers.IntegerField() for key in keys}
    return type(name, (serializers.Serializer,), {**fields, "__doc__": help_text})


ContactCountsSerializer = _counts(
    "ContactCountsSerializer", Contact.State.values, "Contacts in each state."
)
CallStatusCountsSerializer = _counts(
    "CallStatusCountsSerializer", CallStatus.values, "Calls in each status."
)
CallOutcomeCountsSerializer = _counts(
    "CallOutcomeCountsSerializer",
    list(CALL_OUTCOMES),
    "Ended calls by outcome: answered by a person, by a machine (voicemail), busy, "
    "no answer, failed, canceled.",
)


class ContactStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField(source="contacts")
    by_state = ContactCountsSerializer(source="contacts_by_state")


class CallStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField(source="calls")
    by_status = CallStatusCountsSerializer(source="calls_by_status")
    by_outcome = CallOutcomeCountsSerializer(source="calls_by_outcome")
    opted_out = serializers.IntegerField(help_text=_("Calls on which the callee opted out."))
    answer_rate = serializers.FloatField(
        allow_null=True,
        help_text=_(
            "Answered calls (by a person) over ended calls that reached the carrier, "
            "0 to 1; null before any ended."
        ),
    )
    average_answered_seconds = serializers.FloatField(
        allow_null=True, help_text=_("Average duration of the answered calls.")
    )


class CampaignCostSerializer(CostSerializer):
    calls_pending = serializers.IntegerField(
        help_text=_("Calls whose telephony price Twilio has not given yet.")
    )

    def to_representation(self, cost: Any) -> dict[str, Any]:
        return {**cost.as_dict(), "calls_pending": cost.calls_pending}


class CampaignStatsSerializer(serializers.Serializer):
    """``GET /api/v1/campaigns/{id}/stats/``: the campaign's figures so far."""

    contacts = ContactStatsSerializer(source="*")
    calls = CallStatsSerializer(source="*")
    cost = CampaignCostSerializer(
        help_text=_("What the campaign's calls cost so far: the sum of their costs.")
    )
