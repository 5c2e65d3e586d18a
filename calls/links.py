"""The public URLs handed to Twilio for a call's webhooks."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def webhook_url(name: str, call_id: int) -> str:
    """The absolute URL of webhook ``name`` (``calls:<name>``) for call ``call_id``.

    Built on APP_URL, the public base URL: Twilio calls it, and the signature check
    rebuilds the same URL from APP_URL, whatever a proxy in between rewrote.
    """
    path = reverse(f"calls:{name}", kwargs={"call_id": call_id})
    return settings.APP_URL.rstrip("/") + path
