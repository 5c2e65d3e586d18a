"""A campaign in the partner API, and the campaign after a start or resume."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from callcenter.api import PartnerOwnedSerializer, PartnerScopedRelatedField
from campaigns import limits
from campaigns.models import Campaign
from campaigns.phones import PHONE_INPUT_MAX_LENGTH
from campaigns.reports import ABANDONMENT_WINDOW_DAYS, Abandonment, campaign_abandonment
from templates.models import CallTemplate
from voices.models import Voice


class AbandonmentSerializer(serializers.Serializer):
    """A campaign's abandoned calls over the last ``window_days`` days (read-only)."""

    rate = serializers.FloatField(
        allow_null=True,
        help_text=_(
            "abandoned / answered, from 0 to 1; null before any call was answered live. "
            "At 0.01 staff are alerted; an abandoned call that brings it to 0.03 pauses the "
            "campaign (the pause takes it over at least ABANDONMENT_MIN_ANSWERED calls)."
        ),
    )
    abandoned = serializers.IntegerField(
        help_text=_(
            "Calls answered live on which the callee heard nothing from us within 2 seconds "
            "of the answer."
        )
    )
    answered = serializers.IntegerField(
        help_text=_("Calls answered live by a person (not a machine) in the window.")
    )
    window_days = serializers.IntegerField(help_text=_("The days counted, up to now."))


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
    abandonment = serializers.SerializerMethodField(
        help_text=_(
            "The campaign's abandonment rate over the last 30 days (FCC 47 CFR "
            "64.1200(a)(7), Ofcom): calls answered live on which the callee heard nothing "
            "within 2 seconds."
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
            "purpose",
            "calling_windows",
            "frequency_cap_calls",
            "frequency_cap_hours",
            "ring_timeout_seconds",
            "time_limit_seconds",
            "record_calls",
            "transfer_number",
            "machine_action",
            "transport",
            "max_concurrent_calls",
            "calls_per_second",
            "max_attempts",
            "retry_policy",
            "sandbox_personas",
            "limit_warnings",
            "abandonment",
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
            "purpose": {
                "help_text": _(
                    "marketing or service (the default). A marketing campaign calls only "
                    "contacts with a valid legal basis its compliance profile accepts: consent "
                    "under us and es, consent or customer under none."
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

    @extend_schema_field(AbandonmentSerializer)
    def get_abandonment(self, campaign: Campaign) -> dict[str, Any]:
        # A list counts them in its query (campaigns.reports.with_abandonment); one
        # campaign alone asks.
        abandoned = getattr(campaign, "abandoned_calls", None)
        if abandoned is not None:
            figures = Abandonment(
                abandoned=abandoned,
                answered=campaign.live_answered_calls,  # type: ignore[attr-defined]
                window_days=ABANDONMENT_WINDOW_DAYS,
            )
        else:
            figures = campaign_abandonment(campaign=campaign)
        return {
            "rate": figures.rate,
            "abandoned": figures.abandoned,
            "answered": figures.answered,
            "window_days": figures.window_days,
        }


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
