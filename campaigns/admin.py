from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import APIKey

from campaigns import deliveries, services
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    Partner,
    PartnerApiKey,
    PartnerMember,
    WebhookDelivery,
    WebhookEndpoint,
)

# The library's own key model is not used: partners' keys are PartnerApiKey.
admin.site.unregister(APIKey)


class PartnerMemberInline(admin.TabularInline):
    model = PartnerMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [PartnerMemberInline]


@admin.register(PartnerApiKey)
class PartnerApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "partner",
        "created",
        "last_used_at",
        "expiry_date",
        "revoked",
    ]
    list_filter = ["revoked", "partner"]
    list_select_related = ["partner"]
    search_fields = ["prefix", "name", "partner__name"]
    autocomplete_fields = ["partner"]
    fields = ["partner", "name", "expiry_date", "revoked", "prefix", "created", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A key never moves to another partner, and a revoked key stays revoked.
        fixed = ["prefix", "created", "last_used_at"]
        if obj is None:
            return [*fixed, "revoked"]
        if obj.revoked:
            return [*fixed, "partner", "name", "expiry_date", "revoked"]
        return [*fixed, "partner"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # New keys come from the service, and are shown this once.
        if change:
            super().save_model(request, obj, form, change)
            return
        created, key = services.create_api_key(
            partner=obj.partner, name=obj.name, expiry_date=obj.expiry_date
        )
        obj.pk = created.pk
        messages.warning(
            request,
            gettext("The API key “%(name)s” is %(key)s — copy it now: it will not be shown again.")
            % {"name": created.name, "key": key},
        )


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


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "partner", "is_active", "created_at"]
    list_filter = ["is_active", "partner"]
    list_select_related = ["partner"]
    search_fields = ["url", "partner__name", "description"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["secret", "created_at", "updated_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["state", "event_type", "endpoint__partner"]
    list_select_related = ["endpoint__partner"]
    search_fields = ["=event_id", "endpoint__url"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields if field.name != "id"]
    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries come from events only

    @admin.action(description=_("Send again"))
    def redeliver(self, request: HttpRequest, queryset: Any) -> None:
        for delivery in queryset:
            deliveries.redeliver(delivery=delivery)
        messages.success(
            request,
            ngettext(
                "%(count)d delivery will be sent again.",
                "%(count)d deliveries will be sent again.",
                len(queryset),
            )
            % {"count": len(queryset)},
        )
