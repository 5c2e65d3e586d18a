"""Who may open a relay call's socket: Twilio's signed handshake for exactly that call's
URL, then a `setup` for that live relay call (its SID and contact). Anything else is
refused, before a message is read (the handshake answered 403) or at the setup (closed),
and counted."""

from __future__ import annotations

import json

import pytest
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from calls import links, telephony
from calls.models import Call
from calls.relay.consumer import NOT_A_RELAY_CALL, NOT_SET_UP
from tests.calls.relay.conftest import (
    RelayServer,
    answered,
    close_code,
    eventually,
    prompt,
    relay_errors,
    reply,
    send,
    setup_message,
)
from tests.factories import CallFactory, ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)


def sessions() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("callcenter_relay_sessions") or 0.0


def talks(socket: ClientConnection, call: Call) -> str:
    """Set up ``socket`` for ``call`` and have one turn on it: what the model said."""
    send(socket, setup_message(call))
    send(socket, prompt("Sí, iré."))
    text, _messages = reply(socket)
    return text


# --- The handshake --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["wss", "https"])
def test_a_handshake_signed_over_our_url_or_its_https_twin_is_accepted(
    relay_call, fake_openai, relay_server, scheme
) -> None:
    # Twilio does not document whether it signs the wss:// URL or its https:// twin.
    answered(relay_call)
    fake_openai.queue_reply("Perfecto, le esperamos.")
    url = links.relay_url(relay_call.pk)
    assert url.startswith("wss://")
    signed_over = url.replace("wss://", f"{scheme}://", 1)
    with relay_server.socket(relay_call.pk, url=signed_over) as socket:
        assert talks(socket, relay_call) == "Perfecto, le esperamos."


def refused(server: RelayServer, call: Call, **signing: str | None) -> int:
    """The status the handshake was answered with (it must not be accepted)."""
    with pytest.raises(InvalidStatus) as refusal:
        server.socket(call.pk, **signing)
    return refusal.value.response.status_code


@pytest.mark.parametrize(
    "signing",
    [
        pytest.param({"signature": ""}, id="unsigned"),
        pytest.param({"signature": "c2lnbmVkIGJ5IG5vYm9keQ=="}, id="forged"),
        pytest.param({"url": "wss://calls.example.com/relay/{pk}/?x=1"}, id="another-url"),
        pytest.param({"url": "wss://attacker.example.com/relay/{pk}/"}, id="another-host"),
    ],
)
def test_a_handshake_not_signed_for_our_url_is_refused_before_a_message_is_read(
    relay_call, relay_server, signing
) -> None:
    # given a call answered (its greeting said), as when Twilio would open its socket
    answered(relay_call)
    if "url" in signing:
        signing = {"url": signing["url"].format(pk=relay_call.pk)}
    before, open_before = relay_errors("refused"), sessions()

    # when / then
    assert refused(relay_server, relay_call, **signing) == 403
    assert relay_errors("refused") == before + 1
    assert sessions() == open_before
    relay_call.refresh_from_db()
    assert relay_call.first_audio_ms is None  # no setup was read
    assert relay_call.turns.count() == 1  # the greeting alone


def test_a_handshake_signed_for_another_calls_url_is_refused(relay_call, relay_server) -> None:
    answered(relay_call)
    other = CallFactory(
        campaign=relay_call.campaign,
        contact=ContactFactory(campaign=relay_call.campaign, phone="+34600000004"),
        status=Call.Status.IN_PROGRESS,
        provider_sid="CA" + "d" * 32,
    )
    signature = telephony.sign_request(url=links.relay_url(other.pk), params={})
    before = relay_errors("refused")

    assert refused(relay_server, relay_call, signature=signature) == 403
    assert relay_errors("refused") == before + 1
    relay_call.refresh_from_db()
    assert relay_call.first_audio_ms is None


def test_a_handshake_signed_with_another_accounts_token_is_refused(
    relay_call, relay_server
) -> None:
    answered(relay_call)
    url = links.relay_url(relay_call.pk)
    # Signed as Twilio signs, over our very URL, but with another account's auth token.
    signature = RequestValidator("another account's token").compute_signature(url, {})
    assert signature != telephony.sign_request(url=url, params={})

    assert refused(relay_server, relay_call, signature=signature) == 403


# --- The setup ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param({"callSid": "CA" + "e" * 32}, id="another-call-sid"),
        pytest.param({"customParameters": {"contact": "999999"}}, id="another-contact"),
    ],
)
def test_a_setup_naming_another_call_or_contact_is_closed(relay_call, relay_server, setup) -> None:
    answered(relay_call)
    before = relay_errors("refused")
    with relay_server.socket(relay_call.pk) as socket:
        send(socket, setup_message(relay_call, **setup))
        assert close_code(socket) == NOT_A_RELAY_CALL
    assert relay_errors("refused") == before + 1
    relay_call.refresh_from_db()
    assert relay_call.first_audio_ms is None  # the session never opened


@pytest.mark.parametrize("state", ["not-answered-as-relay", "completed", "ended"])
def test_a_setup_for_a_call_that_is_not_a_live_relay_call_is_closed(
    relay_call, relay_server, state
) -> None:
    if state != "not-answered-as-relay":
        answered(relay_call)
    if state == "completed":
        Call.objects.filter(pk=relay_call.pk).update(status=Call.Status.COMPLETED)
    elif state == "ended":
        relay_call.refresh_from_db()
        Call.objects.filter(pk=relay_call.pk).update(
            dialogue={**relay_call.dialogue, "ended": True}
        )
    before = relay_errors("refused")
    with relay_server.socket(relay_call.pk) as socket:
        send(socket, setup_message(relay_call))
        assert close_code(socket) == NOT_A_RELAY_CALL
    assert relay_errors("refused") == before + 1


def test_a_frame_before_the_setup_closes_the_socket(relay_call, fake_openai, relay_server) -> None:
    answered(relay_call)
    before = relay_errors("refused")
    with relay_server.socket(relay_call.pk) as socket:
        send(socket, prompt("Hola"))
        assert close_code(socket) == NOT_SET_UP
    assert relay_errors("refused") == before + 1
    assert fake_openai.chat_requests == []
    assert relay_call.turns.count() == 1  # the caller's words were not taken


def test_the_setup_opens_the_session_and_keeps_the_time_to_first_audio(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    open_before = sessions()
    with relay_server.open_session(relay_call) as socket:
        eventually(lambda: Call.objects.get(pk=relay_call.pk).first_audio_ms is not None)
        assert sessions() == open_before + 1
        socket.send(json.dumps(setup_message(relay_call)))  # a second setup changes nothing
    eventually(lambda: sessions() == open_before)
