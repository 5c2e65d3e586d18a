"""Fault suite, restarts: Redis restarted mid-campaign (empty, as a cache without a volume
comes back), PostgreSQL unreachable for a few seconds. The campaign resumes; webhooks that
came in meanwhile were answered, or failed so that Twilio tried them again; no event is
lost: every status callback is kept, every ended call is told to the partner.

The product runs as processes (web, two workers, beat) on PostgreSQL, reached through a
proxy the test cuts, and a Redis the test stops and starts. Twilio is the fake one, with
a carrier playing each call through the webhooks and retrying a failed status callback as
Twilio does (``#rc=3``).
"""

from __future__ import annotations

import datetime
import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from calls import dialing
from calls.models import Call, CallEvent
from campaigns.models import Campaign, Contact, WebhookDelivery, WebhookEvent
from campaigns.services import start_campaign
from tests.factories import WebhookEndpointFactory
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.webhooks import FakeWebhookReceiver
from tests.reliability.campaign_runs import (
    make_campaign,
    numbers,
    product_env,
    reconcile,
    settled,
    use_twilio,
)
from tests.reliability.carrier import ANSWERED, BUSY, NO_ANSWER, Carrier, ScriptedTwilio
from tests.reliability.conftest import needs_postgresql_and_redis
from tests.reliability.servers import RedisServer, TcpProxy, wait_for
from tests.reliability.system import ProductSystem

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgresql_and_redis, pytest.mark.slow]

OUTCOMES = numbers([ANSWERED, ANSWERED, BUSY, NO_ANSWER], 4)
ENDS = {
    ANSWERED: Contact.State.DONE,
    BUSY: Contact.State.EXHAUSTED,
    NO_ANSWER: Contact.State.EXHAUSTED,
}
OUTAGE_SECONDS = 2.0
DEADLINE_SECONDS = 120


@pytest.fixture
def campaign() -> Campaign:
    """One call per contact, a few at a time, so that the outage falls in the middle."""
    return make_campaign(OUTCOMES, max_attempts=1, max_concurrent_calls=3, calls_per_second=2)


@pytest.fixture
def receiver(campaign) -> FakeWebhookReceiver:
    """The partner's endpoint, subscribed to call.completed."""
    with FakeWebhookReceiver() as receiver:
        endpoint = WebhookEndpointFactory(
            partner=campaign.partner, url=receiver.url, events=[WebhookEvent.CALL_COMPLETED]
        )
        receiver.secret = endpoint.secret
        yield receiver


@pytest.fixture
def twilio(settings, monkeypatch) -> ScriptedTwilio:
    with ScriptedTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio:
        use_twilio(settings, twilio)
        # Beat's reconciliation requeues a call whose dial task was lost after two
        # minutes; in the test's own ticks, after a few seconds.
        monkeypatch.setattr(dialing, "PENDING_GRACE", datetime.timedelta(seconds=5))
        yield twilio


@pytest.fixture
def redis(tmp_path) -> RedisServer:
    with RedisServer(tmp_path) as redis:
        yield redis


@pytest.fixture
def database_proxy() -> TcpProxy:
    """The way the product's processes reach PostgreSQL."""
    database = connection.settings_dict
    with TcpProxy((database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))) as proxy:
        yield proxy


def through(proxy: TcpProxy) -> str:
    """DATABASE_URL with the proxy in place of the server."""
    url = urlsplit(os.environ["DATABASE_URL"])
    credentials = url.netloc.rpartition("@")[0]
    return urlunsplit(url._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))


def run_through(campaign: Campaign, system: ProductSystem, carrier: Carrier, outage) -> None:
    """Start the campaign, ``outage()`` once a few calls ended and others are going on,
    then let it finish (processes that died are started again, as in production)."""
    start_campaign(campaign=campaign)
    wait_for(
        lambda: (
            Call.objects.filter(campaign=campaign, ended_at__isnull=False).count() >= 2
            and Call.objects.filter(campaign=campaign, status="in-progress").exists()
        ),
        timeout=60,
        message="the campaign did not start calling",
    )
    outage()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not settled(campaign, carrier) and time.monotonic() < deadline:
        system.revive()
        reconcile(system)
        time.sleep(1)
    assert settled(campaign, carrier), list(campaign.contacts.values_list("state", "state_reason"))
    # The last calls' conclusions (and their call.completed) follow their final callbacks
    # by a moment: a worker busy with a tick of beat's takes them a little later.
    wait_for(
        lambda: all(told(call) for call in Call.objects.filter(campaign=campaign)),
        timeout=30,
        message="an ended call was never told to the partner",
    )


def told(call: Call) -> bool:
    return WebhookDelivery.objects.filter(
        event_type=WebhookEvent.CALL_COMPLETED, payload__data__call_id=call.pk
    ).exists()


def assert_nothing_lost(campaign: Campaign, carrier: Carrier) -> None:
    # the outage was felt: callbacks failed, and Twilio tried them again...
    assert carrier.failed_callbacks
    # ...until they were answered; every TwiML webhook gave the callee something to hear
    assert carrier.lost_callbacks == []
    assert carrier.problems == []
    for contact in campaign.contacts.all():
        assert contact.state == ENDS[OUTCOMES[contact.phone]], contact.state_reason
        [call] = contact.calls.all()
        # each status callback Twilio sent is kept, once
        sent = {"answered": 4, "busy": 2, "no-answer": 3}[OUTCOMES[contact.phone]]
        kept = call.events.filter(kind=CallEvent.Kind.STATUS, sequence_number__isnull=False)
        assert sorted(kept.values_list("sequence_number", flat=True)) == list(range(sent))
        # and the partner is told of each ended call
        assert told(call), call


def test_a_campaign_resumes_after_redis_restarts_and_loses_no_event(
    tmp_path, campaign, receiver, twilio, redis
) -> None:
    with (
        ProductSystem(tmp_path, env=product_env(redis, twilio), workers=2, beats=1) as system,
        Carrier(twilio, outcome=OUTCOMES.get, pause=0.3) as carrier,
    ):

        def restart_redis() -> None:
            redis.stop()
            time.sleep(OUTAGE_SECONDS)
            redis.start()

        run_through(campaign, system, carrier, restart_redis)

    assert_nothing_lost(campaign, carrier)


def test_a_campaign_resumes_after_postgresql_is_unreachable_and_loses_no_event(
    tmp_path, campaign, receiver, twilio, redis, database_proxy
) -> None:
    env = product_env(redis, twilio, DATABASE_URL=through(database_proxy))
    with (
        ProductSystem(tmp_path, env=env, workers=2, beats=1) as system,
        Carrier(twilio, outcome=OUTCOMES.get, pause=0.3) as carrier,
    ):

        def cut_postgresql() -> None:
            database_proxy.cut()
            time.sleep(OUTAGE_SECONDS)
            database_proxy.restore()

        run_through(campaign, system, carrier, cut_postgresql)

    assert_nothing_lost(campaign, carrier)
