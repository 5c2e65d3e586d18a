"""The staff console's webhook pages: partners' endpoints and the deliveries to them."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from audit.admin_log import AuditedAdminMixin
from campaigns import deliveries
from campaigns.forms import WebhookEndpointForm
from campaigns.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "partner", "is_active", "created_at"]
    list_filter = ["is_active", "partner"]
    list_select_related = ["partner"]
    search_fields = ["url", "partner__name", "description"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["secret", "created_at", "updated_at"]
    # A URL typed without a scheme is taken as HTTPS (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


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
    search_fields = ["endpoint__url"]
    search_help_text = _("An event id, or part of an endpoint's URL.")
    # One row per event and endpoint: counting them all on every page is the slow part.
    show_full_result_count = False
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields if field.name != "id"]
    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries come from events only

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> tuple[QuerySet[WebhookDelivery], bool]:
        # An event id is looked up as one, by its index (a search field compares the
        # UUID as upper-cased text, which reads every row).
        try:
            event_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(event_id=event_id), False

    @admin.action(description=_("Send again"), permissions=["change"])
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
