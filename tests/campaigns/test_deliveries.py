"""Partner webhooks: signing, recording events, delivering with retries, the event sources."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone, translation

from callcenter.metrics import WEBHOOK_DELIVERIES_FAILED, WEBHOOK_DELIVERY_ATTEMPTS
from calls.models import Call
from calls.outcomes import conclude_call, extraction_unavailable, opt_out
from campaigns import deliveries, tasks
from campaigns.deliveries import (
    CLAIM_LEASE,
    create_webhook_endpoint,
    deliver,
    emit_event,
    queue_due_deliveries,
    redeliver,
    retry_delay,
    rotate_webhook_secret,
    sign,
    update_webhook_endpoint,
    verify_signature,
)
from campaigns.models import (
    Campaign,
    Contact,
    Partner,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from campaigns.services import complete_campaign, transition_campaign
from tests.factories import (
    CallFactory,
    ContactFactory,
    PartnerFactory,
    TurnFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from tests.fakes.network import TEST_CA, TLS_NAME, Resolver, server_tls
from tests.fakes.webhooks import FakeWebhookReceiver, signature_ok

pytestmark = pytest.mark.django_db

DATA = {"call_id": 7, "status": "completed"}


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as server:
        yield server


@pytest.fixture
def endpoint(partner, receiver) -> WebhookEndpoint:
    """An active endpoint of the partner, subscribed to every event, at the receiver."""
    endpoint = create_webhook_endpoint(
        partner=partner, url=f"{receiver.url}/hooks", events=list(WebhookEvent.values)
    )
    receiver.secret = endpoint.secret
    return endpoint


def emitted(partner: Partner, event_type: str = WebhookEvent.CALL_COMPLETED) -> WebhookDelivery:
    assert emit_event(partner=partner, event_type=event_type, payload=DATA) == 1
    return WebhookDelivery.objects.latest("pk")


def metric(counter, **labels: str) -> float:
    return counter.labels(**labels)._value.get()


# --- Signatures -----------------------------------------------------------------------------


def test_sign_follows_the_documented_rule() -> None:
    body = b'{"id":"x","type":"call.completed"}'

    header = sign(secret="whsec_abc", timestamp=1767225600, body=body)

    digest = hmac.new(b"whsec_abc", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767225600,v1={digest}"
    assert signature_ok("whsec_abc", header, body, now=1767225600)


def test_verify_signature_accepts_a_fresh_signature_and_any_matching_v1() -> None:
    now = timezone.now()
    header = sign(secret="whsec_abc", timestamp=int(now.timestamp()) - 299, body="{}")

    assert verify_signature(secret="whsec_abc", header=header, body=b"{}", now=now)
    assert verify_signature(
        secret="whsec_abc", header=f"{header},v1={'0' * 64}", body="{}", now=now
    )


@pytest.mark.parametrize(
    ("secret", "body", "age", "mangle"),
    [
        ("whsec_other", "{}", 0, None),  # another secret
        ("whsec_abc", '{"x":1}', 0, None),  # another body
        ("whsec_abc", "{}", 301, None),  # older than five minutes: a replay
        ("whsec_abc", "{}", -301, None),  # from the future
        ("whsec_abc", "{}", 0, "v1only"),  # no timestamp
        ("whsec_abc", "{}", 0, "garbage"),
    ],
)
def test_verify_signature_refuses(secret, body, age, mangle) -> None:
    now = timezone.now()
    header = sign(secret="whsec_abc", timestamp=int(now.timestamp()) - age, body="{}")
    if mangle == "v1only":
        header = header.split(",", 1)[1]
    elif mangle == "garbage":
        header = "t=abc,v1"

    assert not verify_signature(secret=secret, header=header, body=body, now=now)


# --- Endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "events", "field"),
    [
        ("ftp://example.com/hooks", ["call.completed"], "url"),
        ("https://example.com/hooks", ["call.started"], "events"),
        ("https://example.com/hooks", [], "events"),
        ("https://example.com/hooks", ["call.completed", "call.completed"], "events"),
    ],
)
def test_create_webhook_endpoint_refuses_bad_urls_and_events(partner, url, events, field) -> None:
    with pytest.raises(ValidationError) as excinfo:
        create_webhook_endpoint(partner=partner, url=url, events=events)

    assert field in excinfo.value.message_dict


def test_create_webhook_endpoint_gives_each_endpoint_its_own_secret(partner) -> None:
    first = create_webhook_endpoint(
        partner=partner, url="https://example.com/a", events=["call.completed"]
    )
    second = create_webhook_endpoint(
        partner=partner, url="https://example.com/b", events=["call.completed"]
    )

    assert first.secret.startswith("whsec_")
    assert first.secret != second.secret


def test_update_webhook_endpoint_validates_and_saves(endpoint) -> None:
    update_webhook_endpoint(endpoint=endpoint, events=["contact.opted_out"], is_active=False)

    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.is_active) == (["contact.opted_out"], False)
    with pytest.raises(ValidationError):
        update_webhook_endpoint(endpoint=endpoint, url="file:///etc/passwd")


def test_rotate_webhook_secret_signs_what_follows_with_the_new_secret(endpoint, receiver) -> None:
    delivery = emitted(endpoint.partner)
    old = endpoint.secret

    rotate_webhook_secret(endpoint=endpoint)

    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.secret.startswith("whsec_")
    assert deliver(delivery_id=delivery.pk) == "retry"  # the receiver still has the old one
    receiver.secret = endpoint.secret
    redeliver(delivery=delivery)
    assert deliver(delivery_id=delivery.pk) == "delivered"


# --- Recording events -----------------------------------------------------------------------


def test_emit_event_records_a_delivery_per_subscribed_active_endpoint_of_the_partner(
    partner, django_capture_on_commit_callbacks
) -> None:
    # given
    def add(owner: Partner, name: str, events: list[str], *, active: bool = True):
        return WebhookEndpointFactory(
            partner=owner, url=f"https://{name}.example.com/", events=events, is_active=active
        )

    first = add(partner, "first", ["call.completed"])
    second = add(partner, "second", ["contact.opted_out", "call.completed"])
    add(partner, "other-event", ["campaign.completed"])
    add(partner, "inactive", ["call.completed"], active=False)
    add(PartnerFactory(name="Other"), "other-partner", ["call.completed"])

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        count = emit_event(partner=partner, event_type="call.completed", payload=DATA)

    # then
    assert count == 2
    recorded = list(WebhookDelivery.objects.order_by("endpoint_id"))
    assert [d.endpoint_id for d in recorded] == [first.pk, second.pk]
    assert len(callbacks) == 2  # one task each, queued after commit
    [event_id] = {d.event_id for d in recorded}
    envelope = recorded[0].payload
    assert envelope["id"] == str(event_id)
    assert envelope["type"] == "call.completed"
    assert envelope["data"] == DATA
    assert datetime.datetime.fromisoformat(envelope["created_at"]) <= timezone.now()
    assert all(d.state == "pending" and d.next_attempt_at is not None for d in recorded)


def test_emit_event_with_a_key_records_the_event_once(endpoint) -> None:
    assert emit_event(partner=endpoint.partner, event_type="call.completed", payload={}, key="a")
    assert not emit_event(
        partner=endpoint.partner, event_type="call.completed", payload={}, key="a"
    )
    assert emit_event(partner=endpoint.partner, event_type="call.completed", payload={}, key="b")

    assert WebhookDelivery.objects.count() == 2


def test_emit_event_serialises_dates_decimals_and_uuids(endpoint) -> None:
    at = datetime.datetime(2026, 1, 1, 9, 30, tzinfo=datetime.UTC)
    payload = {"at": at, "price": Decimal("0.013"), "id": uuid.UUID(int=1)}

    emit_event(partner=endpoint.partner, event_type="call.completed", payload=payload)

    assert WebhookDelivery.objects.get().payload["data"] == {
        "at": "2026-01-01T09:30:00Z",
        "price": "0.013",
        "id": str(uuid.UUID(int=1)),
    }


def test_emit_event_refuses_unknown_event_types(partner) -> None:
    with pytest.raises(ValueError, match="unknown webhook event"):
        emit_event(partner=partner, event_type="call.started", payload={})


# --- Delivering -----------------------------------------------------------------------------


def test_deliver_posts_the_signed_envelope(endpoint, receiver, settings) -> None:
    # given
    settings.APP_NAME = "Callcenter"
    delivery = emitted(endpoint.partner)
    before = metric(WEBHOOK_DELIVERY_ATTEMPTS, result="delivered")

    # when
    result = deliver(delivery_id=delivery.pk)

    # then
    assert result == "delivered"
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/hooks"
    assert request.signature_ok
    assert request.json == delivery.payload
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("Callcenter")
    assert request.headers["callcenter-event"] == str(delivery.event_id)
    assert request.headers["callcenter-event-type"] == "call.completed"
    assert request.headers["callcenter-delivery"] == str(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    [entry] = delivery.attempt_log
    assert entry["status_code"] == 200
    assert json.loads(entry["response_body"]) == {"received": True}
    assert metric(WEBHOOK_DELIVERY_ATTEMPTS, result="delivered") == before + 1


def test_deliver_twice_sends_once(endpoint, receiver) -> None:
    delivery = emitted(endpoint.partner)

    assert deliver(delivery_id=delivery.pk) == "delivered"
    assert deliver(delivery_id=delivery.pk) == "skipped"

    assert len(receiver.requests) == 1


def test_two_workers_never_send_the_same_attempt(endpoint, receiver, monkeypatch) -> None:
    # given: a second worker runs the same task while the first is sending
    delivery = emitted(endpoint.partner)
    real_post = deliveries.sending._post
    second: list[str] = []

    def post_while_another_worker_runs(**kwargs):
        second.append(deliver(delivery_id=delivery.pk))
        return real_post(**kwargs)

    monkeypatch.setattr(deliveries.sending, "_post", post_while_another_worker_runs)

    # when
    first = deliver(delivery_id=delivery.pk)

    # then
    assert (first, second) == ("delivered", ["skipped"])
    assert len(receiver.requests) == 1


def test_a_stale_claim_loses_the_compare_and_set(endpoint, receiver) -> None:
    # given: the delivery as one worker read it, before another claimed the attempt
    delivery = emitted(endpoint.partner)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=1)

    # when: the first worker claims what it read (attempts=0)
    claimed = (
        WebhookDelivery.objects.due(timezone.now())
        .filter(pk=delivery.pk, attempts=delivery.attempts)
        .update(attempts=delivery.attempts + 1)
    )

    # then
    assert claimed == 0


def test_a_failing_endpoint_is_retried_with_backoff(endpoint, receiver) -> None:
    # given
    delivery = emitted(endpoint.partner)
    receiver.fail_next(500, times=2, body="x" * 2000)
    start = timezone.now()

    # when: the first attempt fails
    assert deliver(delivery_id=delivery.pk, now=start) == "retry"

    # then: the next is 24-30 s later (30 s less up to 20 % of jitter)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert "500" in delivery.last_error
    first_wait = (delivery.next_attempt_at - start).total_seconds()
    assert 24 <= first_wait <= 31
    [entry] = delivery.attempt_log
    assert entry["status_code"] == 500
    assert entry["response_body"] == "x" * 500
    assert entry["duration_ms"] >= 0
    assert entry["at"] == start.isoformat()

    # when: too early, nothing is sent; at its time, the second attempt fails too
    assert deliver(delivery_id=delivery.pk, now=start + datetime.timedelta(seconds=10)) == (
        "skipped"
    )
    second = delivery.next_attempt_at
    assert deliver(delivery_id=delivery.pk, now=second) == "retry"

    # then: the wait has doubled
    delivery.refresh_from_db()
    assert 48 <= (delivery.next_attempt_at - second).total_seconds() <= 61
    assert len(receiver.requests) == 2

    # when: the third attempt is answered
    assert deliver(delivery_id=delivery.pk, now=delivery.next_attempt_at) == "delivered"

    # then
    delivery.refresh_from_db()
    assert [e["status_code"] for e in delivery.attempt_log] == [500, 500, 200]
    assert delivery.last_error == ""


def test_a_timeout_is_retried(endpoint, receiver, settings) -> None:
    settings.WEBHOOK_TIMEOUT = 0.3
    receiver.delay_next(2)
    delivery = emitted(endpoint.partner)
    before = metric(WEBHOOK_DELIVERY_ATTEMPTS, result="timeout")

    assert deliver(delivery_id=delivery.pk) == "retry"

    delivery.refresh_from_db()
    [entry] = delivery.attempt_log
    assert entry["status_code"] is None
    assert "0.3" in entry["error"]
    assert entry["duration_ms"] >= 250
    assert delivery.next_attempt_at > timezone.now()
    assert metric(WEBHOOK_DELIVERY_ATTEMPTS, result="timeout") == before + 1


@pytest.mark.parametrize("fault", ["refused", "dropped"])
def test_a_connection_error_is_retried(endpoint, receiver, closed_port, fault) -> None:
    if fault == "refused":
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            url=f"http://127.0.0.1:{closed_port}/hooks"
        )
    else:
        receiver.drop_next()
    delivery = emitted(endpoint.partner)
    before = metric(WEBHOOK_DELIVERY_ATTEMPTS, result="connection_error")

    assert deliver(delivery_id=delivery.pk) == "retry"

    delivery.refresh_from_db()
    assert delivery.state == "pending"
    assert delivery.last_status_code is None
    assert delivery.last_error
    assert metric(WEBHOOK_DELIVERY_ATTEMPTS, result="connection_error") == before + 1


def test_a_wrong_signature_is_a_failure_like_any_other(endpoint, receiver) -> None:
    receiver.secret = "whsec_not_the_endpoints"
    delivery = emitted(endpoint.partner)

    assert deliver(delivery_id=delivery.pk) == "retry"

    delivery.refresh_from_db()
    assert delivery.last_status_code == 401


def test_a_long_retry_after_is_honoured(endpoint, receiver) -> None:
    receiver.fail_next(503, headers={"Retry-After": "600"})
    delivery = emitted(endpoint.partner)
    start = timezone.now()

    deliver(delivery_id=delivery.pk, now=start)

    delivery.refresh_from_db()
    assert 600 <= (delivery.next_attempt_at - start).total_seconds() <= 605


def test_delivery_gives_up_24_hours_after_the_event(endpoint, receiver) -> None:
    # given: an event whose retries have gone on for almost a day
    delivery = emitted(endpoint.partner)
    receiver.fail_next(502, times=2)
    created = delivery.created_at
    before = metric(WEBHOOK_DELIVERIES_FAILED, reason="expired")

    # when: an attempt fails with time left for the next
    assert deliver(delivery_id=delivery.pk, now=created + datetime.timedelta(hours=23)) == "retry"
    # and one fails when the next would fall past the day
    late = created + datetime.timedelta(hours=24) - datetime.timedelta(seconds=20)
    assert deliver(delivery_id=delivery.pk, now=late) == "failed"

    # then
    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.next_attempt_at is None
    assert delivery.attempts == 2
    assert "502" in delivery.last_error
    assert "24" in delivery.last_error
    assert metric(WEBHOOK_DELIVERIES_FAILED, reason="expired") == before + 1
    assert deliver(delivery_id=delivery.pk, now=late + datetime.timedelta(hours=1)) == "skipped"
    assert len(receiver.requests) == 2


def test_410_gone_fails_the_delivery_and_disables_the_endpoint(endpoint, receiver) -> None:
    receiver.fail_next(410)
    delivery = emitted(endpoint.partner)
    other = emitted(endpoint.partner, WebhookEvent.CONTACT_OPTED_OUT)

    assert deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert (delivery.state, delivery.last_status_code) == ("failed", 410)
    assert endpoint.is_active is False
    # what was still pending for it fails without a request; nothing new is recorded
    assert deliver(delivery_id=other.pk) == "failed"
    assert len(receiver.requests) == 1
    assert emit_event(partner=endpoint.partner, event_type="call.completed", payload={}) == 0


def test_deliver_refuses_urls_that_are_not_http(endpoint, receiver) -> None:
    delivery = emitted(endpoint.partner)
    # A row written around the model's validation.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="file:///etc/passwd")

    assert deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.attempts == 0
    assert "http" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "[::1]"])
def test_deliver_refuses_internal_addresses_outside_development(
    endpoint, receiver, settings, host
) -> None:
    # given: a production setting, and an endpoint inside our own network
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=f"http://{host}:9/hooks")
    delivery = emitted(endpoint.partner)

    # when
    result = deliver(delivery_id=delivery.pk)

    # then: the attempt is refused, says why, and nothing is sent
    delivery.refresh_from_db()
    assert (result, delivery.state, delivery.attempts) == ("failed", "failed", 1)
    assert host.strip("[]") in delivery.last_error
    [entry] = delivery.attempt_log
    assert (entry["status_code"], entry["response_body"]) == (None, "")
    assert entry["error"] == delivery.last_error
    assert receiver.requests == []


def test_a_redirect_is_not_followed(endpoint, receiver, closed_port) -> None:
    # given: the endpoint sends us elsewhere (say, inside our own network)
    receiver.fail_next(302, headers={"Location": f"http://127.0.0.1:{closed_port}/admin"})
    delivery = emitted(endpoint.partner)

    # when
    assert deliver(delivery_id=delivery.pk) == "retry"

    # then: one request, to the registered URL; the 302 is a failure like any other
    delivery.refresh_from_db()
    assert delivery.last_status_code == 302
    assert len(receiver.requests) == 1


@pytest.fixture
def tls_receiver(monkeypatch) -> Iterator[FakeWebhookReceiver]:
    """The receiver over HTTPS as hooks.partner.test, its certificate's CA trusted."""
    monkeypatch.setenv("SSL_CERT_FILE", str(TEST_CA))  # read by httpx's default context
    server = FakeWebhookReceiver()
    server.tls = server_tls()
    with server:
        yield server


@pytest.mark.parametrize(("name", "result"), [(TLS_NAME, "delivered"), ("other.test", "retry")])
def test_https_is_sent_to_the_checked_address_and_checks_the_certificate_for_the_name(
    partner, tls_receiver, monkeypatch, name, result
) -> None:
    # given: names that resolve to the receiver, whose certificate is for hooks.partner.test
    resolver = Resolver(answers={name: [["127.0.0.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver.getaddrinfo)
    port = tls_receiver.url.rsplit(":", 1)[1]
    endpoint = create_webhook_endpoint(
        partner=partner, url=f"https://{name}:{port}/hooks", events=["call.completed"]
    )
    tls_receiver.secret = endpoint.secret
    delivery = emitted(partner)

    # when
    assert deliver(delivery_id=delivery.pk) == result

    # then: the right name is verified; any other fails the handshake, before any request
    delivery.refresh_from_db()
    assert resolver.lookups == [name]
    if result == "delivered":
        assert tls_receiver.requests[0].headers["host"] == f"{name}:{port}"
    else:
        assert tls_receiver.requests == []
        assert "certificate" in delivery.last_error.lower()


def test_an_attempt_whose_worker_died_is_tried_again_after_the_lease(endpoint, receiver) -> None:
    # given: attempt 1 claimed, never recorded
    delivery = emitted(endpoint.partner)
    claimed_at = timezone.now() - CLAIM_LEASE - datetime.timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=claimed_at + CLAIM_LEASE
    )
    assert queue_due_deliveries() == 1

    # when
    assert deliver(delivery_id=delivery.pk) == "delivered"

    # then
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert [(e["attempt"], e["status_code"]) for e in delivery.attempt_log] == [
        (1, None),
        (2, 200),
    ]


def test_a_claimed_attempt_is_not_queued_again_before_its_lease_ends(endpoint) -> None:
    delivery = emitted(endpoint.partner)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=timezone.now() + CLAIM_LEASE
    )

    assert queue_due_deliveries() == 0
    assert deliver(delivery_id=delivery.pk) == "skipped"


def test_retry_delay_doubles_up_to_an_hour() -> None:
    for attempt, step in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (40, 3600)]:
        wait = retry_delay(attempt=attempt).total_seconds()
        assert step * 0.8 <= wait <= step
    assert retry_delay(attempt=1, retry_after=90000).total_seconds() == 3600


# --- Redelivering and the beat tick ---------------------------------------------------------


def test_redeliver_sends_a_delivered_event_again_keeping_its_log(
    endpoint, receiver, django_capture_on_commit_callbacks
) -> None:
    # given
    delivery = emitted(endpoint.partner)
    deliver(delivery_id=delivery.pk)

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        delivery = redeliver(delivery=delivery)

    # then
    assert len(callbacks) == 1
    assert delivery.state == "pending"
    assert delivery.delivered_at is None
    assert delivery.next_attempt_at <= timezone.now()
    assert len(delivery.attempt_log) == 1
    assert deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert [e["attempt"] for e in delivery.attempt_log] == [1, 2]
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body


def test_redeliver_gives_a_failed_delivery_one_more_attempt(endpoint, receiver) -> None:
    # given: given up on
    delivery = emitted(endpoint.partner)
    receiver.fail_next(500, times=2)
    late = delivery.created_at + datetime.timedelta(hours=24)
    assert deliver(delivery_id=delivery.pk, now=late) == "failed"

    # when: redelivered, and failing once more
    redeliver(delivery=delivery, now=late)
    assert deliver(delivery_id=delivery.pk, now=late) == "failed"
    # when: redelivered once the endpoint is fixed
    redeliver(delivery=delivery, now=late)

    # then
    assert deliver(delivery_id=delivery.pk, now=late) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3
    assert [e["status_code"] for e in delivery.attempt_log] == [500, 500, 200]


def test_redeliver_leaves_an_attempt_in_flight_alone(endpoint) -> None:
    delivery = emitted(endpoint.partner)
    lease_end = timezone.now() + CLAIM_LEASE
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=1, next_attempt_at=lease_end)

    delivery = redeliver(delivery=delivery)

    assert delivery.next_attempt_at == lease_end


def test_queue_due_deliveries_queues_only_pending_ones_that_are_due(
    endpoint, django_capture_on_commit_callbacks
) -> None:
    # given
    _due, later, done = (emitted(endpoint.partner) for _ in range(3))
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=now + datetime.timedelta(minutes=1)
    )
    WebhookDelivery.objects.filter(pk=done.pk).update(state="delivered")

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        assert queue_due_deliveries(now=now) == 1

    # then
    assert len(callbacks) == 1


def test_the_tasks_call_the_services(endpoint, receiver) -> None:
    delivery = emitted(endpoint.partner)

    assert tasks.retry_webhook_deliveries_task.apply().get() == 1
    assert tasks.deliver_webhook_task.apply(args=(delivery.pk,)).get() == "delivered"
    assert tasks.deliver_webhook_task.apply(args=(delivery.pk,)).get() == "skipped"


# --- Event sources --------------------------------------------------------------------------


@pytest.fixture
def ended_call(campaign) -> Call:
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        external_id="crm-1",
        state=Contact.State.DONE,
        attempts=1,
    )
    now = timezone.now()
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.COMPLETED,
        provider_sid="CA" + "d" * 32,
        from_number="+34910000000",
        to_number=contact.phone,
        answered_by="human",
        dialed_at=now - datetime.timedelta(seconds=40),
        answered_at=now - datetime.timedelta(seconds=35),
        ended_at=now,
        duration_seconds=35,
        price="0.01300",
        price_unit="EUR",
        outcome={"attending": True},
        summary="Vendrá.",
    )


def test_concluding_a_call_emits_call_completed_once(endpoint, ended_call) -> None:
    # given: a call nobody spoke on (no model needed)
    TurnFactory(
        call=ended_call, sequence=0, role="agent", text="Hola", started_at=ended_call.ended_at
    )

    # when: concluded twice (a task run twice)
    conclude_call(call_id=ended_call.pk)
    conclude_call(call_id=ended_call.pk)

    # then
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "call.completed"
    data = delivery.payload["data"]
    assert data["call_id"] == ended_call.pk
    assert data["campaign_id"] == ended_call.campaign_id
    assert data["contact"] == {
        "id": ended_call.contact_id,
        "phone": "+34600000001",
        "external_id": "crm-1",
        "state": "done",
    }
    assert (data["status"], data["answered_by"]) == ("completed", "human")
    assert (data["duration_seconds"], data["price"], data["price_unit"]) == (
        35,
        "0.01300",
        "EUR",
    )
    assert data["outcome"] == {"attending": True}
    assert data["summary"] == "Vendrá."
    assert data["extraction"] == "no_conversation"
    assert {"started_at", "answered_at", "ended_at"} <= data.keys()


def test_an_unavailable_extraction_still_emits_call_completed(endpoint, ended_call) -> None:
    extraction_unavailable(call_id=ended_call.pk, reason="model down")

    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["data"]["extraction"] == "failed"
    assert delivery.payload["data"]["outcome"]["extraction_failed"] is True


def test_opting_out_emits_contact_opted_out(endpoint, ended_call) -> None:
    opt_out(call=ended_call, how="words")
    opt_out(call=ended_call, how="key 9")

    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "contact.opted_out"
    data = delivery.payload["data"]
    assert data["contact"]["id"] == ended_call.contact_id
    assert data["contact"]["state"] == "opted_out"
    assert (data["call_id"], data["campaign_id"], data["how"]) == (
        ended_call.pk,
        ended_call.campaign_id,
        "words",
    )


def test_completing_a_campaign_emits_campaign_completed(
    endpoint, campaign, django_capture_on_commit_callbacks
) -> None:
    # given
    ContactFactory(campaign=campaign, phone="+34600000001", state=Contact.State.DONE)
    ContactFactory(campaign=campaign, phone="+34600000002", state="opted_out")
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        complete_campaign(campaign=campaign)

    # then
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "campaign.completed"
    data = delivery.payload["data"]
    assert data["campaign"]["id"] == campaign.pk
    assert data["campaign"]["state"] == "completed"
    assert data["contacts"]["total"] == 2
    assert (data["contacts"]["done"], data["contacts"]["opted_out"]) == (1, 1)
    assert data["contacts"]["pending"] == 0
    assert len(callbacks) == 1


def test_campaign_completed_without_a_call_tells_the_partner_why(endpoint, campaign) -> None:
    # given a running campaign whose only contact lacks the first name the template speaks
    ContactFactory(campaign=campaign, phone="+34600000001", state=Contact.State.FAILED)
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    with translation.override("en"):
        complete_campaign(campaign=campaign)

    data = WebhookDelivery.objects.get().payload["data"]
    assert data["campaign"]["state"] == "completed"
    assert data["campaign"]["state_reason"] == (
        "No call was made: of its 1 contact, 1 lacks first_name."
    )


def test_other_campaign_moves_emit_nothing(endpoint, campaign) -> None:
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.CANCELLED)

    assert not WebhookDelivery.objects.exists()


def test_the_receiver_refuses_a_replayed_request(endpoint) -> None:
    body = b"{}"
    old = int(time.time()) - 301

    assert not signature_ok(
        endpoint.secret, sign(secret=endpoint.secret, timestamp=old, body=body), body
    )


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_one_delivery_send_it_once(partner, receiver) -> None:
    # given: a slow endpoint, and four workers running the same task at once
    endpoint = create_webhook_endpoint(
        partner=partner, url=f"{receiver.url}/hooks", events=["call.completed"]
    )
    receiver.secret = endpoint.secret
    # Recorded directly: emitting would queue a real task on commit.
    delivery = WebhookDeliveryFactory(
        endpoint=endpoint,
        event_id=uuid.uuid4(),
        event_type="call.completed",
        payload={"data": DATA},
        next_attempt_at=timezone.now(),
    )
    receiver.delay_next(0.3)
    barrier = threading.Barrier(4)

    def worker() -> str:
        barrier.wait()
        try:
            return deliver(delivery_id=delivery.pk)
        finally:
            connection.close()

    # when
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: worker(), range(4)))

    # then
    assert sorted(results) == ["delivered", "skipped", "skipped", "skipped"]
    assert len(receiver.requests) == 1
