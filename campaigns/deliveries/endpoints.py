"""A partner's webhook endpoints: created, updated and their secrets rotated, each URL
checked against the egress rules before anything is sent to it."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from campaigns.egress import (
    url_refusal,
)
from campaigns.models import (
    Partner,
    WebhookEndpoint,
    webhook_secret,
)

URL_SCHEMES = ("http", "https")


# --- Endpoints ------------------------------------------------------------------------------


def create_webhook_endpoint(
    *, partner: Partner, url: str, events: list[str], description: str = ""
) -> WebhookEndpoint:
    """A new active endpoint of ``partner`` with a fresh secret; validated first (an
    http(s) URL whose host resolves to public addresses only, known event types)."""
    endpoint = WebhookEndpoint(partner=partner, url=url, events=events, description=description)
    endpoint.full_clean()
    _check_destination(url)
    endpoint.save()
    return endpoint


def update_webhook_endpoint(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given of ``endpoint`` (validated). Deliveries already recorded go to
    its URL as it is when they are sent; a disabled endpoint gets no new ones. A new URL
    is checked as on creation."""
    url_changed = url is not None and url != endpoint.url
    changes = {
        name: value
        for name, value in (
            ("url", url),
            ("events", events),
            ("description", description),
            ("is_active", is_active),
        )
        if value is not None
    }
    for name, value in changes.items():
        setattr(endpoint, name, value)
    endpoint.full_clean()
    if url_changed:
        _check_destination(endpoint.url)
    endpoint.save(update_fields=[*changes, "updated_at"])
    return endpoint


def rotate_webhook_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Give ``endpoint`` a new secret, at once: every attempt from now on, retries of
    earlier events included, is signed with it."""
    endpoint.secret = webhook_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


def _refusal(endpoint: WebhookEndpoint) -> str:
    """Why nothing may be sent to ``endpoint`` (empty: it may)."""
    if not endpoint.is_active:
        return _("The endpoint is disabled.")
    if urlsplit(endpoint.url).scheme.lower() not in URL_SCHEMES:
        return _("Events are sent only to http:// and https:// URLs.")
    return ""


def _check_destination(url: str) -> None:
    """Refuse (``ValidationError`` on ``url``) a URL whose host does not resolve now, or
    resolves to an internal address; it is checked again at every attempt."""
    if refusal := url_refusal(url):
        message, code = refusal
        raise ValidationError({"url": ValidationError(message, code=code)})
