"""The go-live check of ConversationRelay's socket: a handshake signed as Twilio signs it,
through APP_URL, to this app under uvicorn (and to a server that takes no WebSocket)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import translation

from callcenter import preflight
from callcenter.preflight import Status
from campaigns.models import Campaign, ConversationTransport
from tests.callcenter.test_preflight import reply, serving
from tests.calls.relay.conftest import RelayServer
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _english(settings) -> Iterator[None]:
    settings.TELEPHONY_BACKEND = "sandbox"  # the handshake is signed with the sandbox's key
    with translation.override("en"):
        yield


def test_a_signed_handshake_through_app_url_is_ok(settings) -> None:
    with RelayServer() as server:
        settings.APP_URL = f"http://127.0.0.1:{server.port}"
        finding = preflight.check_relay_socket(timeout=5)
    assert finding.status == Status.OK, finding.detail
    assert f"ws://127.0.0.1:{server.port}/relay/0/" in finding.detail


@pytest.mark.parametrize(
    ("transport", "status"),
    [(ConversationTransport.GATHER, Status.WARN), (ConversationTransport.RELAY, Status.FAIL)],
)
def test_a_proxy_that_takes_no_websocket_warns_or_fails_when_a_campaign_streams(
    settings, partner, call_template, transport, status
) -> None:
    CampaignFactory(
        partner=partner, template=call_template, transport=transport, state=Campaign.State.RUNNING
    )
    with serving(reply(404, b"no such page")) as url:
        settings.APP_URL = url
        finding = preflight.check_relay_socket(timeout=5)
    assert finding.status == status
    assert "did not take a WebSocket" in finding.detail
    assert "docs/deploy.md" in finding.action
