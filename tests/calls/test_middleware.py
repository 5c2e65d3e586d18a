"""Twilio's webhooks skip the browsers' middleware under the ASGI server
(calls.middleware.TwilioWebhookMiddleware); every other request goes the whole way."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from calls.models import Call, CallEvent
from tests.calls.test_webhooks import (  # noqa: F401 - the fixture signs as Twilio's account
    _twilio_settings,
    failures,
    make_call,
    post_signed,
    status_events,
)

# The sync webhook runs in the webhooks' own threads, with connections of their own.
pytestmark = pytest.mark.django_db(transaction=True)


def asgi(request):
    """``request(client)`` sent through Django's ASGI handler, as uvicorn sends it."""

    async def send():
        return await request(AsyncClient())

    return async_to_sync(send)()


def test_signed_status_callback_goes_straight_to_its_view(campaign) -> None:
    call = make_call(campaign)

    response = asgi(lambda client: post_signed(client, call.pk, status_events()[1]))

    assert response.status_code == 204
    call.refresh_from_db()
    assert call.status == Call.Status.RINGING
    assert CallEvent.objects.filter(call=call).count() == 1
    # Past the middleware that adds browser headers; after the one that gives request ids.
    assert "X-Frame-Options" not in response.headers
    assert response.headers["X-Request-ID"]


def test_unsigned_callback_is_refused_on_the_short_way(campaign) -> None:
    call = make_call(campaign)
    before = failures()

    response = asgi(
        lambda client: client.post(f"/twilio/calls/{call.pk}/status", status_events()[1])
    )

    assert response.status_code == 403
    assert failures() == before + 1
    call.refresh_from_db()
    assert call.status == Call.Status.DIALING


def test_other_requests_keep_the_whole_chain() -> None:
    admin = asgi(lambda client: client.get("/admin/login/"))
    unknown = asgi(lambda client: client.post("/twilio/calls/1/nothing-here", {}))

    assert admin.status_code == 200
    assert admin.headers["X-Frame-Options"] == "DENY"
    assert unknown.status_code == 404
