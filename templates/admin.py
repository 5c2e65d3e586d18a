from __future__ import annotations

from django.contrib import admin

from templates.models import CallTemplate


@admin.register(CallTemplate)
class CallTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "language", "mode", "updated_at"]
    list_filter = ["mode", "language", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "partner__name"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["created_at", "updated_at"]
