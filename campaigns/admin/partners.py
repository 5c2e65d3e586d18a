"""The staff console's partner pages: partners with their users, and their API keys."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import APIKey

from audit.admin_log import AuditedAdminMixin
from campaigns import services
from campaigns.forms import PartnerForm
from campaigns.models import Partner, PartnerApiKey, PartnerMember

# The library's own key model is not used: partners' keys are PartnerApiKey.
admin.site.unregister(APIKey)


class PartnerMemberInline(admin.TabularInline):
    model = PartnerMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


@admin.register(Partner)
class PartnerAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = PartnerForm
    list_display = [
        "name",
        "is_active",
        "max_concurrent_calls_cap",
        "calls_per_second_cap",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [PartnerMemberInline]
    fieldsets = [
        (None, {"fields": ["name", "is_active"]}),
        (
            _("Telephony limits"),
            {
                "fields": [
                    "caller_numbers",
                    "transfer_numbers",
                    "compliance_profiles",
                    ("max_concurrent_calls_cap", "calls_per_second_cap", "max_attempts_cap"),
                ],
                "description": _(
                    "What this partner's campaigns may use. The API and this console refuse "
                    "a campaign setting beyond them; the dialer clamps the pacing of "
                    "campaigns saved before a cap was lowered, and pauses those whose "
                    "numbers or profile are no longer allowed."
                ),
            },
        ),
        (
            _("Retention"),
            {
                "fields": [
                    ("transcripts_retention_days", "recordings_retention_days"),
                    ("outcomes_retention_days", "uploads_retention_days"),
                ],
                "description": _(
                    "How many days this partner's data is kept, counted from the call's end "
                    "(or the upload). Every night a task deletes what is older and records "
                    "it in the audit trail. Empty: kept until deleted."
                ),
            },
        ),
        (_("History"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]


@admin.register(PartnerApiKey)
class PartnerApiKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "partner",
        "can_manage_access",
        "created",
        "last_used_at",
        "expiry_date",
        "revoked",
    ]
    list_filter = ["revoked", "can_manage_access", "partner"]
    list_select_related = ["partner"]
    search_fields = ["prefix", "name", "partner__name"]
    autocomplete_fields = ["partner"]
    fields = [
        "partner",
        "name",
        "can_manage_access",
        "expiry_date",
        "revoked",
        "prefix",
        "created_by_key",
        "created",
        "last_used_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A key never moves to another partner, and a revoked key stays revoked.
        fixed = ["prefix", "created_by_key", "created", "last_used_at"]
        if obj is None:
            return [*fixed, "revoked"]
        if obj.revoked:
            return [*fixed, "partner", "name", "can_manage_access", "expiry_date", "revoked"]
        return [*fixed, "partner"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # New keys come from the service, and are shown this once; a revocation goes
        # through it too, to revoke the keys this one made.
        if change:
            super().save_model(request, obj, form, change)
            if "revoked" in form.changed_data and obj.revoked:
                services.revoke_api_key(api_key=obj)
            return
        created, key = services.create_api_key(
            partner=obj.partner,
            name=obj.name,
            expiry_date=obj.expiry_date,
            can_manage_access=obj.can_manage_access,
        )
        obj.pk = created.pk
        messages.warning(
            request,
            gettext("The API key “%(name)s” is %(key)s — copy it now: it will not be shown again.")
            % {"name": created.name, "key": key},
        )
