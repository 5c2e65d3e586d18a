"""Server-side request forgery through partners' webhook URLs (docs/security.md, ssrf).

A partner chooses the URL the platform POSTs events to, and reads the first 500 characters
of each answer in the attempts log. These tests play a partner who makes that URL lead to
the platform's own network: by DNS rebinding, by a lookup that fails first, or by one of
the many ways of writing an internal address. The resolver is ours (``socket.getaddrinfo``
answers as each test says) and so is the "internet": a connection to a public address is
routed to a server on 127.0.0.1, or refused, and never leaves the machine.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import SplitResult, parse_qs, urlsplit

import pytest
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from campaigns.deliveries import deliver, emit_event
from campaigns.models import Partner, WebhookDelivery, WebhookEndpoint, WebhookEvent
from campaigns.services import create_api_key
from tests.callcenter.test_settings import PRODUCTION, settings_error
from tests.factories import WebhookEndpointFactory
from tests.fakes.network import TEST_CA, TLS_NAME, Internet, Resolver, server_tls
from tests.fakes.server import LocalFakeServer, RecordedRequest, Response
from tests.fakes.webhooks import FakeWebhookReceiver

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"  # a public address; "the internet" below routes it to a local server
SECRET_ANSWER = b"internal-only: db password is hunter2"


class InternalService(LocalFakeServer[RecordedRequest]):
    """A service inside our network (an admin panel, cloud metadata): answers anyone."""

    thread_name = "internal-service"

    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        return RecordedRequest(
            method=method, path=url.path, query=parse_qs(url.query), headers=headers
        )

    def _answer(self, request: RecordedRequest, problems: list[str]) -> Response:
        return 200, {"Content-Type": "text/plain"}, SECRET_ANSWER


@pytest.fixture
def api_client(api_partner: Partner) -> APIClient:
    """A key of ``api_partner`` allowed to manage webhook endpoints (test_api_keys.py)."""
    _api_key, key = create_api_key(partner=api_partner, name="Hooks", can_manage_access=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def resolver(monkeypatch) -> Resolver:
    fake = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
def internet(monkeypatch, resolver) -> Internet:
    fake = Internet()
    monkeypatch.setattr(socket, "create_connection", fake.create_connection)
    return fake


@pytest.fixture
def production(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False


@pytest.fixture
def internal() -> Iterator[InternalService]:
    with InternalService() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as server:
        yield server


def port_of(server: LocalFakeServer) -> int:
    return int(urlsplit(server.url).port)


def endpoint_at(partner: Partner, url: str) -> WebhookEndpoint:
    """An endpoint written as an old row would be: saved before URLs were checked."""
    return WebhookEndpointFactory(partner=partner, url=url, events=["call.completed"])


def emitted(partner: Partner) -> WebhookDelivery:
    assert emit_event(partner=partner, event_type=WebhookEvent.CALL_COMPLETED, payload={}) == 1
    return WebhookDelivery.objects.latest("pk")


# --- DNS rebinding and failed lookups -------------------------------------------------------


def test_rebinding_name_cannot_reach_loopback(
    partner, production, resolver, internet, internal, receiver
) -> None:
    # given: a name that answers a public address, then 127.0.0.1, on the internal port
    port = port_of(internal)
    resolver.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    internet.routes[PUBLIC, port] = port_of(receiver)
    endpoint = endpoint_at(partner, f"http://rebind.example:{port}/hooks")
    receiver.secret = endpoint.secret
    delivery = emitted(partner)

    # when
    result = deliver(delivery_id=delivery.pk)

    # then: one lookup, and the request went to the address checked, under the name
    delivery.refresh_from_db()
    assert internal.requests == []
    assert SECRET_ANSWER.decode() not in str(delivery.attempt_log)
    assert resolver.lookups == ["rebind.example"]
    assert internet.connections == [(PUBLIC, port)]
    assert result == "delivered"
    [request] = receiver.requests
    assert request.headers["host"] == f"rebind.example:{port}"
    assert request.signature_ok


def test_rebinding_name_over_https_cannot_reach_loopback(
    partner, production, resolver, internet, monkeypatch
) -> None:
    # given: both servers hold a certificate for the name, trusted by the platform
    monkeypatch.setenv("SSL_CERT_FILE", str(TEST_CA))  # read by httpx's default context
    internal, receiver = InternalService(), FakeWebhookReceiver()
    internal.tls = receiver.tls = server_tls()
    with internal, receiver:
        port = port_of(internal)
        resolver.answers[TLS_NAME] = [[PUBLIC], ["127.0.0.1"]]
        internet.routes[PUBLIC, port] = port_of(receiver)
        endpoint = endpoint_at(partner, f"https://{TLS_NAME}:{port}/hooks")
        receiver.secret = endpoint.secret

        # when
        result = deliver(delivery_id=emitted(partner).pk)

    # then: TLS to the checked address, the certificate checked for the name (SNI too)
    assert internal.requests == []
    assert internet.connections == [(PUBLIC, port)]
    assert result == "delivered"
    assert receiver.requests[0].headers["host"] == f"{TLS_NAME}:{port}"


def test_rebinding_after_the_url_was_checked_on_save_is_refused_at_send_time(
    api_client: APIClient, api_partner, production, resolver, internet, internal
) -> None:
    # given: public when registered, loopback ever after
    port = port_of(internal)
    resolver.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    response = api_client.post(
        "/api/v1/webhooks/",
        {"url": f"http://rebind.example:{port}/hooks", "events": ["call.completed"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    delivery = emitted(api_partner)

    # when
    with translation.override("en"):
        result = deliver(delivery_id=delivery.pk)

    # then: refused for good, saying why in words, with nothing of any answer
    delivery.refresh_from_db()
    assert (result, delivery.state) == ("failed", "failed")
    assert internal.requests == []
    assert internet.connections == []
    [entry] = delivery.attempt_log
    assert (entry["status_code"], entry["response_body"]) == (None, "")
    assert "loopback" in entry["error"]
    assert "rebind.example" in entry["error"]
    assert "127.0.0.1" not in entry["error"]  # what our resolver says of a name stays ours


def test_a_name_whose_lookup_fails_is_not_sent_anywhere(
    partner, production, resolver, internet, internal
) -> None:
    # given: the first lookup fails, the next would answer loopback
    port = port_of(internal)
    resolver.answers["flaky.example"] = [None, ["127.0.0.1"]]
    endpoint_at(partner, f"http://flaky.example:{port}/hooks")
    delivery = emitted(partner)

    # when
    with translation.override("en"):
        result = deliver(delivery_id=delivery.pk)

    # then: the attempt failed without a connection, and will be retried (DNS may return)
    delivery.refresh_from_db()
    assert internal.requests == []
    assert internet.connections == []
    assert (result, delivery.state) == ("retry", "pending")
    assert "could not be resolved" in delivery.attempt_log[0]["error"]


def test_every_address_of_a_name_is_checked(partner, production, resolver, internet, internal):
    port = port_of(internal)
    resolver.answers["mixed.example"] = [[PUBLIC, "127.0.0.1"]]
    endpoint_at(partner, f"http://mixed.example:{port}/hooks")
    delivery = emitted(partner)

    assert deliver(delivery_id=delivery.pk) == "failed"

    assert internet.connections == []
    assert internal.requests == []


# --- Every way of writing an internal address -----------------------------------------------

INTERNAL = [
    ("64:ff9b::7f00:1", "NAT64"),
    ("64:ff9b:1::a00:1", "NAT64"),
    ("2002:7f00:1::", "6to4"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::7f00:1", "loopback"),
    ("::ffff:0:a9fe:a9fe", "link-local"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address refused, not bound
    ("::", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),
]


@pytest.mark.parametrize(("address", "words"), INTERNAL)
@pytest.mark.parametrize("written", ["literal", "name"])
def test_internal_addresses_in_any_encoding_are_refused(
    partner, production, resolver, internet, address, words, written
) -> None:
    # given: the address in the URL, or a name answering it
    if written == "literal":
        host = f"[{address}]" if ":" in address else address
    else:
        host = "hostile.example"
        resolver.answers[host] = [[address]]
    endpoint_at(partner, f"http://{host}:8080/hooks")
    delivery = emitted(partner)

    # when
    with translation.override("en"):
        result = deliver(delivery_id=delivery.pk)

    # then
    delivery.refresh_from_db()
    assert (result, delivery.state) == ("failed", "failed")
    assert internet.connections == []
    assert words in delivery.last_error


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/"],
)
def test_loopback_written_in_decimal_octal_or_hex_is_refused(
    partner, production, resolver, internet, url
) -> None:
    endpoint_at(partner, url)
    delivery = emitted(partner)

    with translation.override("en"):
        assert deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert internet.connections == []
    assert "loopback" in delivery.last_error


@pytest.mark.parametrize("address", [PUBLIC, "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_still_called(
    partner, production, resolver, internet, receiver, address
) -> None:
    # given: a public address (IPv6 and NAT64 of a public IPv4 too), routed to the receiver
    resolver.answers["partner.example"] = [[address]]
    internet.routes[address, 8080] = port_of(receiver)
    endpoint = endpoint_at(partner, "http://partner.example:8080/hooks")
    receiver.secret = endpoint.secret

    assert deliver(delivery_id=emitted(partner).pk) == "delivered"

    assert internet.connections == [(address, 8080)]
    assert receiver.requests[0].headers["host"] == "partner.example:8080"


# --- URLs are checked when saved ------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (["127.0.0.1"], "internal", "loopback"),
        (["169.254.169.254"], "internal", "link-local"),
        (["64:ff9b::a00:1"], "internal", "NAT64"),
        (None, "unresolved", "could not be resolved"),
    ],
)
def test_the_api_refuses_to_save_a_url_that_leads_inside(
    api_client: APIClient, api_partner, production, resolver, answer, code, words
) -> None:
    resolver.answers["inside.example"] = [answer]

    response = api_client.post(
        "/api/v1/webhooks/",
        {"url": "https://inside.example/hooks", "events": ["call.completed"]},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("url", code)
    assert words in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_the_api_refuses_to_change_a_url_to_one_that_leads_inside(
    api_client: APIClient, api_partner, production, resolver
) -> None:
    resolver.answers["partner.example"] = [[PUBLIC]]
    resolver.answers["inside.example"] = [["10.0.0.5"]]
    endpoint = endpoint_at(api_partner, "https://partner.example/hooks")

    response = api_client.patch(
        f"/api/v1/webhooks/{endpoint.pk}/", {"url": "https://inside.example/x"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "url"
    endpoint.refresh_from_db()
    assert endpoint.url == "https://partner.example/hooks"
    # an unchanged URL is not looked up again: the description can change while DNS is down
    resolver.answers["partner.example"] = [None]
    response = api_client.patch(
        f"/api/v1/webhooks/{endpoint.pk}/", {"description": "ours"}, format="json"
    )
    assert response.status_code == 200


def test_the_admin_refuses_to_save_a_url_that_leads_inside(
    admin_client, partner, production, resolver
) -> None:
    resolver.answers["inside.example"] = [["192.168.0.10"]]

    with translation.override("en"):
        response = admin_client.post(
            reverse("admin:campaigns_webhookendpoint_add"),
            {
                "partner": partner.pk,
                "url": "https://inside.example/hooks",
                "events": '["call.completed"]',
                "is_active": "on",
            },
            HTTP_ACCEPT_LANGUAGE="en",
        )

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "private network" in errors["url"][0]
    assert not WebhookEndpoint.objects.exists()


# --- The allowance for local receivers ------------------------------------------------------


@pytest.mark.parametrize("app_env", ["production", "staging"])
def test_internal_addresses_cannot_be_allowed_outside_development(
    monkeypatch, tmp_path, app_env
) -> None:
    error = settings_error(
        monkeypatch,
        tmp_path,
        **{**PRODUCTION, "APP_ENV": app_env, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"},
    )

    assert f"WEBHOOK_ALLOW_PRIVATE_ADDRESSES: must be false when APP_ENV={app_env}" in error
