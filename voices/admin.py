from __future__ import annotations

from django.contrib import admin

from voices.models import SpeechClip, Voice


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ["name", "language", "provider_voice_id", "updated_at"]
    list_filter = ["language"]
    search_fields = ["name", "provider_voice_id"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(SpeechClip)
class SpeechClipAdmin(admin.ModelAdmin):
    list_display = ["text", "voice", "model_id", "output_format", "size_bytes", "created_at"]
    list_filter = ["output_format", "model_id"]
    list_select_related = ["voice"]
    search_fields = ["text", "key"]
    readonly_fields = ["key", "size_bytes", "characters", "created_at", "updated_at"]
    autocomplete_fields = ["voice"]
