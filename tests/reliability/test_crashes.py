"""Fault suite, crashes: a worker killed (SIGKILL) between claiming a call and dialling
it, and between dialling it and saving its SID. After reconciliation no call is lost and
none is placed twice.

The product runs as processes (web and one worker) on PostgreSQL and a Redis of the
test's own; it reaches the fake Twilio through a proxy that the test stalls (the dial
request never arrives) or makes lose Twilio's answers (the call exists, the worker never
hears of it), so that the worker is surely in between when it is killed.
"""

from __future__ import annotations

import time

import pytest

from calls.models import Call, CallStatus
from campaigns.models import Campaign, Contact
from campaigns.services import start_campaign
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.reliability.campaign_runs import (
    make_campaign,
    product_env,
    reconcile,
    settled,
    use_twilio,
)
from tests.reliability.carrier import ANSWERED, Carrier, ScriptedTwilio
from tests.reliability.conftest import needs_postgresql_and_redis
from tests.reliability.servers import RedisServer, TcpProxy, wait_for
from tests.reliability.system import ProductSystem

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgresql_and_redis, pytest.mark.slow]

PHONE = "+34630000001"


@pytest.fixture
def campaign() -> Campaign:
    return make_campaign({PHONE: ANSWERED})


@pytest.fixture
def twilio(settings) -> ScriptedTwilio:
    with ScriptedTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio:
        use_twilio(settings, twilio)
        yield twilio


@pytest.fixture
def proxy(twilio) -> TcpProxy:
    """The way the product's processes reach Twilio."""
    host, port = twilio.url.removeprefix("http://").split(":")
    with TcpProxy((host, int(port))) as proxy:
        yield proxy


@pytest.fixture
def system(tmp_path, twilio, proxy) -> ProductSystem:
    """Web and one worker; a dial request waits up to 10 s for Twilio's answer."""
    with RedisServer(tmp_path) as redis:
        env = product_env(
            redis,
            twilio,
            TWILIO_API_BASE_URL=f"http://127.0.0.1:{proxy.port}",
            TWILIO_TIMEOUT="10.0",
        )
        with ProductSystem(tmp_path, env=env, workers=1, threads=2) as system:
            yield system


def run_to_the_end(campaign: Campaign, system: ProductSystem, carrier: Carrier) -> None:
    deadline = time.monotonic() + 60
    while not settled(campaign, carrier) and time.monotonic() < deadline:
        system.send_task("calls.tasks.dispatch_calls_task")
        time.sleep(0.5)
    assert settled(campaign, carrier), list(campaign.contacts.values_list("state", "state_reason"))


def test_a_worker_killed_between_its_claim_and_the_dial_loses_no_call_nor_dials_twice(
    campaign, twilio, proxy, system
) -> None:
    with Carrier(twilio, outcome={PHONE: ANSWERED}.get) as carrier:
        # given: the worker claimed the call; its dial request is on its way, not at Twilio
        proxy.stall()
        start_campaign(campaign=campaign)
        system.send_task("calls.tasks.dispatch_calls_task")
        wait_for(
            lambda: Call.objects.filter(status=CallStatus.DIALING).exists() and proxy.connections,
            timeout=30,
            message="no worker is dialling",
        )
        [claimed] = Call.objects.filter(campaign=campaign)

        # when: the worker is killed there, and another one takes over
        system.kill("worker-0")
        proxy.restore()
        system.start_worker()
        result = reconcile(system, dials_older_than=0)

        # then: reconciliation learns from Twilio that it never had the call and lets the
        # contact wait again; it is called once, as a new attempt
        assert result.released == [claimed.pk]
        run_to_the_end(campaign, system, carrier)

    assert twilio.creations_to(PHONE) == 1
    contact = Contact.objects.get(campaign=campaign)
    calls = list(contact.calls.order_by("attempt").values_list("attempt", "status"))
    assert calls == [(1, CallStatus.NOT_PLACED), (2, CallStatus.COMPLETED)]
    assert contact.state == Contact.State.DONE
    assert carrier.problems == []


def test_a_worker_killed_between_the_dial_and_saving_the_sid_loses_no_call_nor_dials_twice(
    campaign, twilio, proxy, system
) -> None:
    with Carrier(twilio, outcome={PHONE: ANSWERED}.get) as carrier:
        # given: Twilio created the call; its answer, with the SID, never reaches the worker
        carrier.hold()
        proxy.lose_answers()
        start_campaign(campaign=campaign)
        system.send_task("calls.tasks.dispatch_calls_task")
        wait_for(lambda: twilio.forms, timeout=30, message="Twilio was not asked to dial")
        [dialled] = Call.objects.filter(campaign=campaign)
        assert (dialled.status, dialled.provider_sid) == (CallStatus.DIALING, None)

        # when: the worker is killed before it could save the SID
        system.kill("worker-0")
        proxy.restore()
        system.start_worker()
        result = reconcile(system, dials_older_than=0)

        # then: reconciliation finds the call at Twilio and keeps it; it goes on to its end
        assert result.adopted == [dialled.pk]
        carrier.release()
        run_to_the_end(campaign, system, carrier)

    [sid] = twilio.forms
    contact = Contact.objects.get(campaign=campaign)
    calls = list(contact.calls.values_list("attempt", "status", "provider_sid"))
    assert calls == [(1, CallStatus.COMPLETED, sid)]
    assert contact.state == Contact.State.DONE
    assert carrier.problems == []
