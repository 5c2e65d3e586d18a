"""Twilio's webhooks skip the browsers' middleware under the ASGI server
(calls.middleware.TwilioWebhookMiddleware); every other request goes the whole way."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers import asgi as django_asgi
from django.test import AsyncClient
from django.urls import reverse

from calls import telephony
from calls.middleware import WebhookASGIHandler
from calls.models import Call, CallEvent
from tests.calls.test_webhooks import (  # noqa: F401 - the fixture signs as Twilio's account
    APP_URL,
    _twilio_settings,
    dialed_call,
    failures,
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
    call = dialed_call(campaign)

    response = asgi(lambda client: post_signed(client, call.pk, status_events()[1]))

    assert response.status_code == 204
    call.refresh_from_db()
    assert call.status == Call.Status.RINGING
    assert CallEvent.objects.filter(call=call).count() == 1
    # Past the middleware that adds browser headers; after the one that gives request ids.
    assert "X-Frame-Options" not in response.headers
    assert response.headers["X-Request-ID"]


def test_unsigned_callback_is_refused_on_the_short_way(campaign) -> None:
    call = dialed_call(campaign)
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


def served(method: str, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request through ``WebhookASGIHandler`` as uvicorn sends it (signed when it
    carries ``params``): its status and body."""
    body = urlencode(params or {}).encode()
    headers = [(b"host", b"testserver")]
    if params is not None:
        signature = telephony.sign_request(url=APP_URL + path, params=params)
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-twilio-signature", signature.encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }

    async def exchange() -> tuple[int, bytes]:
        communicator = ApplicationCommunicator(WebhookASGIHandler(), scope)
        await communicator.send_input({"type": "http.request", "body": body})
        start = await communicator.receive_output(timeout=10)
        content = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        return start["status"], content.get("body", b"")

    return async_to_sync(exchange)()


def test_a_webhook_is_served_without_a_thread_of_its_own(campaign, monkeypatch) -> None:
    contexts: list[str] = []

    class Counted(ThreadSensitiveContext):
        async def __aenter__(self):
            contexts.append("entered")
            return await super().__aenter__()

    monkeypatch.setattr(django_asgi, "ThreadSensitiveContext", Counted)
    call = dialed_call(campaign)
    path = reverse("calls:status", kwargs={"call_id": call.pk})

    status, _body = served("POST", path, status_events()[1])

    assert status == 204
    call.refresh_from_db()
    assert call.status == Call.Status.RINGING
    assert contexts == []  # Django's thread for the request's sync work was not made
    # Every other request still gets it; a wrong path under /twilio/ is a plain 404.
    status, _body = served("GET", "/admin/login/")
    assert status == 200
    assert contexts == ["entered"]
    status, _body = served("POST", "/twilio/calls/1/nothing-here", {})
    assert status == 404
