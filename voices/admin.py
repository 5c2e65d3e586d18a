from __future__ import annotations

from django.contrib import admin
from django.db import models

from voices.models import SpeechClip, Voice


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ["name", "language", "provider_voice_id", "updated_at"]
    list_filter = ["language"]
    search_fields = ["name", "provider_voice_id"]
    readonly_fields = ["created_at", "updated_at"]
    # Django 6 makes https the default scheme for bare URLs; preview URLs are https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(SpeechClip)
class SpeechClipAdmin(admin.ModelAdmin):
    list_display = ["text", "voice", "model_id", "output_format", "size_bytes", "created_at"]
    list_filter = ["output_format", "model_id"]
    list_select_related = ["voice"]
    search_fields = ["text", "key"]
    readonly_fields = ["key", "size_bytes", "characters", "created_at", "updated_at"]
    autocomplete_fields = ["voice"]
