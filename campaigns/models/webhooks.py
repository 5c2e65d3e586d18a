"""Webhooks: a partner's endpoints, the events they receive and each delivery."""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.models.partners import Partner


class WebhookEvent(models.TextChoices):
    CALL_COMPLETED = "call.completed", "call.completed"
    CALL_PRICED = "call.priced", "call.priced"
    CONTACT_OPTED_OUT = "contact.opted_out", "contact.opted_out"
    CAMPAIGN_COMPLETED = "campaign.completed", "campaign.completed"
    IMPORT_COMPLETED = "import.completed", "import.completed"


def webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def validate_webhook_events(value: Any) -> None:
    """A non-empty list of known event types, each once."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError(_("Choose at least one event."), code="no_events")
    unknown = sorted(set(value) - set(WebhookEvent.values))
    if unknown:
        raise ValidationError(
            _("Unknown events: %(events)s."),
            code="unknown_events",
            params={"events": ", ".join(unknown)},
        )
    if len(set(value)) != len(value):
        raise ValidationError(_("Each event may be listed once."), code="duplicate_events")


class WebhookEndpointQuerySet(models.QuerySet):
    def for_partner(self, partner: Partner) -> WebhookEndpointQuerySet:
        return self.filter(partner=partner)

    def active(self) -> WebhookEndpointQuerySet:
        return self.filter(is_active=True)


class WebhookEndpoint(models.Model):
    """A partner's URL that receives signed events of the types it subscribed to."""

    partner = models.ForeignKey(
        Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="webhooks"
    )
    # Events are POSTed over HTTP(S) only (URLField alone also accepts ftp).
    url = models.URLField(
        _("URL"), max_length=500, validators=[URLValidator(schemes=["http", "https"])]
    )
    secret = models.CharField(_("secret"), max_length=100, default=webhook_secret)
    events = models.JSONField(_("events"), default=list, validators=[validate_webhook_events])
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["partner", "id"]

    def __str__(self) -> str:
        return self.url


class WebhookDeliveryState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", pgettext_lazy("delivery state", "Failed")


class WebhookDeliveryQuerySet(models.QuerySet):
    def due(self, now: datetime.datetime) -> WebhookDeliveryQuerySet:
        """Pending deliveries whose next attempt (or expired claim) has come."""
        return self.filter(state=WebhookDeliveryState.PENDING).filter(
            Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True)
        )


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one endpoint, with every attempt's result."""

    State = WebhookDeliveryState

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        verbose_name=_("endpoint"),
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    event_id = models.UUIDField(_("event id"))
    event_type = models.CharField(_("event"), max_length=32, choices=WebhookEvent)
    payload = models.JSONField(_("payload"))
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(
        _("last status code"), null=True, blank=True
    )
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    attempt_log = models.JSONField(_("attempts log"), default=list, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due_idx"),
            # The staff console's list: newest first, filtered by state, found by event id.
            models.Index(fields=["created_at"], name="delivery_created_idx"),
            models.Index(fields=["state", "created_at"], name="delivery_state_created_idx"),
            models.Index(fields=["event_id"], name="delivery_event_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="delivery_unique_event_per_endpoint"
            ),
            models.CheckConstraint(
                condition=Q(state__in=WebhookDeliveryState.values),
                name="delivery_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id}"
