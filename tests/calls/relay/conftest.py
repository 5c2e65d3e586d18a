"""Twilio's side of a relay call: a WebSocket client that plays ConversationRelay against
the real ASGI application (callcenter.asgi), signing its handshake as Twilio does."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from django.urls import reverse
from websockets.sync.client import ClientConnection, connect

from calls import links, telephony
from calls.models import Call
from campaigns.models import Contact, ConversationTransport
from tests.factories import CallFactory, ContactFactory

APP_URL = "https://calls.example.com"
SID = "CA" + "c" * 32


@pytest.fixture(autouse=True)
def _relay_settings(settings) -> Iterator[None]:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"  # signed with the sandbox carrier's key
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 0  # no waiting for a goodbye to be heard
    settings.RELAY_SILENCE_SECONDS = 30
    settings.MAX_TOKENS = 150
    yield


@pytest.fixture
def relay_call(campaign) -> Call:
    """A live call of a relay campaign, answered (its greeting said)."""
    campaign.transport = ConversationTransport.RELAY
    campaign.caller_number = "+34910000000"
    campaign.transfer_number = "+34910000099"
    campaign.save()
    campaign.template.outcome_schema = {
        "type": "object",
        "properties": {"attending": {"type": "boolean"}},
    }
    campaign.template.save(update_fields=["outcome_schema"])
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000003",
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        state=Contact.State.CALLING,
        attempts=1,
    )
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=SID,
        from_number="+34910000000",
        to_number=contact.phone,
    )


def signed_post(client, name: str, call: Call, params: dict[str, str]):
    path = reverse(f"calls:{name}", kwargs={"call_id": call.pk})
    params = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **params}
    signature = telephony.sign_request(url=APP_URL + path, params=params)
    return client.post(path, params, headers={"x-twilio-signature": signature})


class RelayServer:
    """The ASGI application under uvicorn on loopback, in a thread of this process (so
    the test's database and settings are the server's)."""

    def __init__(self) -> None:
        from callcenter.asgi import application

        self.server = uvicorn.Server(
            uvicorn.Config(
                application,
                host="127.0.0.1",
                port=0,
                ws="websockets-sansio",
                lifespan="off",
                log_level="warning",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RelayServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        [server] = self.server.servers
        self.port = server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def socket(
        self, call_id: int, *, signature: str | None = None, url: str | None = None
    ) -> ClientConnection:
        """A ConversationRelay socket to call ``call_id``, its handshake signed as Twilio
        signs it (over ``url``: the URL we gave Twilio by default) unless ``signature``
        is given ("" for none)."""
        url = url or links.relay_url(call_id)
        if signature is None:
            signature = telephony.sign_request(url=url, params={})
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return connect(
            f"ws://127.0.0.1:{self.port}/relay/{call_id}/",
            additional_headers=headers,
            open_timeout=10,
        )

    @contextlib.contextmanager
    def open_session(self, call: Call) -> Iterator[ClientConnection]:
        """A signed socket to ``call`` with its `setup` sent."""
        with self.socket(call.pk) as connection:
            connection.send(json.dumps(setup_message(call)))
            yield connection


@pytest.fixture
def relay_server() -> Iterator[RelayServer]:
    with RelayServer() as server:
        yield server


def setup_message(call: Call, **extra: Any) -> dict[str, Any]:
    """Twilio's `setup` (twilio.com/docs/voice/conversationrelay/websocket-messages)."""
    return {
        "type": "setup",
        "sessionId": "VX" + "0" * 32,
        "accountSid": "AC" + "0" * 32,
        "parentCallSid": "",
        "callSid": call.provider_sid,
        "from": call.from_number,
        "to": call.to_number,
        "forwardedFrom": "",
        "callType": "PSTN",
        "callerName": "",
        "direction": "outbound-api",
        "callStatus": "IN-PROGRESS",
        "customParameters": {"contact": str(call.contact_id)},
        **extra,
    }


def reply(connection: ClientConnection, *, timeout: float = 10) -> tuple[str, list[dict]]:
    """The messages of one talk cycle of ours: tokens until the one with last=true (or an
    `end`); the text they say and the messages."""
    messages: list[dict] = []
    while True:
        message = json.loads(connection.recv(timeout=timeout))
        messages.append(message)
        if message["type"] == "end" or (message["type"] == "text" and message["last"]):
            break
    return "".join(m.get("token", "") for m in messages if m["type"] == "text"), messages


def send(connection: ClientConnection, message: dict[str, Any]) -> None:
    connection.send(json.dumps(message))


def prompt(words: str, *, last: bool = True) -> dict[str, Any]:
    return {"type": "prompt", "voicePrompt": words, "lang": "es-ES", "last": last}
