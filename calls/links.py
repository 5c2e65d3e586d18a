"""The public URLs handed to Twilio for a call's webhooks."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from calls import telephony

# The callbacks (not TwiML: nobody hears a delay) that Twilio is asked to retry when they
# fail, with the connection override `#rc=N` (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides).
CALLBACKS = frozenset({"status", "amd", "recording"})
CALLBACK_RETRIES = 3


def webhook_url(name: str, call_id: int) -> str:
    """The absolute URL of webhook ``name`` (``calls:<name>``) for call ``call_id``.

    Built on APP_URL, the public base URL: Twilio calls it, and the signature check
    rebuilds the same URL from APP_URL, whatever a proxy in between rewrote.
    """
    path = reverse(f"calls:{name}", kwargs={"call_id": call_id})
    return settings.APP_URL.rstrip("/") + path


def callback_url(name: str, call_id: int) -> str:
    """The URL Twilio is given for callback ``name`` (one of CALLBACKS) of call ``call_id``:
    ``webhook_url`` with the connection override ``#rc=3``.

    The one definition of what we register: the dialer hands it to Twilio, and the
    signature check accepts a signature over it or over it without its fragment (Twilio
    does not document which it signs; twilio.com/docs/usage/webhooks/webhooks-connection-overrides).
    """
    if name not in CALLBACKS:
        raise ValueError(f"{name!r} is not a callback registered with connection overrides")
    return telephony.url_with_retries(webhook_url(name, call_id), retry_count=CALLBACK_RETRIES)


def relay_url(call_id: int) -> str:
    """The WebSocket URL Twilio's ConversationRelay opens for call ``call_id``: APP_URL's
    host with ``wss`` (``ws`` for a plain-HTTP APP_URL, as in development). The handshake's
    signature is checked against this very URL (``calls.relay.consumer``)."""
    base = settings.APP_URL.rstrip("/")
    scheme, _sep, rest = base.partition("://")
    return f"{'ws' if scheme == 'http' else 'wss'}://{rest}/relay/{call_id}/"
