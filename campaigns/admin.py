from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, Contact, DoNotCall, Partner


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "partner",
        "state",
        "compliance_profile",
        "template",
        "starts_at",
        "created_at",
    ]
    list_filter = ["state", "compliance_profile", "partner"]
    list_select_related = ["partner", "template"]
    search_fields = ["name", "partner__name"]
    autocomplete_fields = ["partner", "template", "voice"]
    # The state moves only through the campaign services (the lifecycle's checks).
    readonly_fields = ["state", "state_reason", "state_changed_at", "created_at", "updated_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "partner",
                    "name",
                    "state",
                    "state_reason",
                    "template",
                    "voice",
                    "caller_number",
                    "phone_region",
                    ("starts_at", "ends_at"),
                ]
            },
        ),
        (
            _("Calling rules"),
            {
                "fields": [
                    "compliance_profile",
                    "calling_windows",
                    ("frequency_cap_calls", "frequency_cap_hours"),
                    "ring_timeout_seconds",
                    "time_limit_seconds",
                    "machine_action",
                    "record_calls",
                    "transfer_number",
                ]
            },
        ),
        (_("Pacing"), {"fields": [("max_concurrent_calls", "calls_per_second")]}),
        (_("Retries"), {"fields": ["max_attempts", "retry_policy"]}),
        (
            _("Sandbox carrier"),
            {
                "fields": ["sandbox_personas"],
                "classes": ["collapse"],
                "description": _(
                    "Who answers the simulated calls when no Twilio account is set: a "
                    "contact's sandbox_persona variable, else a draw weighted by this mix."
                ),
            },
        ),
        (
            _("History"),
            {"fields": ["state_changed_at", "created_at", "updated_at"], "classes": ["collapse"]},
        ),
    ]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["phone", "campaign", "state", "attempts", "next_attempt_at", "external_id"]
    list_filter = ["state", "campaign__partner"]
    list_select_related = ["campaign"]
    search_fields = ["phone", "external_id"]
    autocomplete_fields = ["campaign"]
    readonly_fields = ["attempts", "created_at", "updated_at"]


@admin.register(DoNotCall)
class DoNotCallAdmin(admin.ModelAdmin):
    list_display = ["phone", "scope", "source", "reason", "created_by", "created_at"]
    list_filter = ["source", ("partner", admin.EmptyFieldListFilter), "partner"]
    list_select_related = ["partner", "created_by"]
    search_fields = ["phone", "reason"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["created_by", "created_at"]

    @admin.display(description=_("scope"), ordering="partner__name")
    def scope(self, obj: DoNotCall) -> str:
        return obj.partner.name if obj.partner else _("Global")
