"""What the fault suite's tests share: Twilio's settings, signed webhook requests, and
the mark of the tests that need PostgreSQL and Redis, as in production."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.conf import settings
from django.test import Client
from django.urls import NoReverseMatch, reverse

from calls import telephony

APP_URL = "https://calls.example.com"

# Tests that start the product's processes, or break the servers under them, run on
# what production runs; CI provides both (.ci/run).
needs_postgresql_and_redis = pytest.mark.skipif(
    not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
    reason="runs on PostgreSQL and Redis, as in production (.ci/run starts them)",
)


@pytest.fixture
def twilio_settings(settings) -> None:
    """Webhooks signed with a Twilio auth token, for calls whose URLs start at APP_URL."""
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "reliability-auth-token"


def webhook_path(name: str, call_id: int, query: str = "") -> str:
    """The path of webhook ``name`` for call ``call_id``; a number's own webhook (the calls
    our numbers receive, calls.inbound) has one path for every call."""
    try:
        path = reverse(f"calls:{name}", kwargs={"call_id": call_id})
    except NoReverseMatch:
        path = reverse(f"calls:{name}")
    return f"{path}?{query}" if query else path


def post_signed(client: Client, path: str, params: Mapping[str, str]):
    """POST ``params`` to ``path`` signed as Twilio signs a request to APP_URL + path."""
    signature = telephony.sign_request(url=settings.APP_URL + path, params=dict(params))
    return client.post(path, dict(params), headers={"x-twilio-signature": signature})
