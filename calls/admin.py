from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from calls.models import Call, CallEvent, Turn


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    fields = [
        "sequence",
        "role",
        "text",
        "digits",
        "confidence",
        "started_at",
        "latency_ms",
        "model_ms",
        "speech_ms",
    ]
    readonly_fields = fields


class CallEventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    can_delete = False
    fields = ["kind", "sequence_number", "payload", "received_at"]
    readonly_fields = fields


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "to_number",
        "campaign",
        "attempt",
        "status",
        "answered_by",
        "duration_seconds",
        "created_at",
    ]
    list_filter = ["status", "answered_by", "campaign__partner", "created_at"]
    list_select_related = ["campaign", "contact"]
    search_fields = ["to_number", "provider_sid"]
    date_hierarchy = "created_at"
    inlines = [TurnInline, CallEventInline]
    # Calls are written by the dialer and the provider's callbacks, never by hand.
    readonly_fields = ["recording", *(field.name for field in Call._meta.fields)]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description=_("recording"))
    def recording(self, call: Call) -> str:
        if not call.recording_url:
            return "-"
        url = reverse("calls:recording-audio", kwargs={"call_id": call.pk})
        return format_html('<audio controls preload="none" src="{}"></audio>', url)


@admin.register(CallEvent)
class CallEventAdmin(admin.ModelAdmin):
    list_display = ["provider_sid", "kind", "sequence_number", "received_at"]
    list_filter = ["kind"]
    search_fields = ["provider_sid"]
    readonly_fields = ["call", "provider_sid", "kind", "sequence_number", "payload", "received_at"]

    def has_add_permission(self, request) -> bool:
        return False
