"""Fault suite, races: several dispatchers and workers on one campaign, each contact
dialled exactly as often as the campaign's policy allows, and never more calls at once
than it allows.

Three Celery workers and two beats run as processes on PostgreSQL and a Redis of the
test's own; on top of the beats' ticks the test queues more dispatch ticks at once, and
two more dial tasks for every call waiting to be dialled. Twilio is the fake one, with a
carrier playing each call it creates through the web server's webhooks.
"""

from __future__ import annotations

import time

import pytest

from calls.models import Call, CallStatus
from campaigns.models import Contact
from campaigns.services import start_campaign
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.reliability.campaign_runs import (
    make_campaign,
    most_live_at_once,
    numbers,
    product_env,
    settled,
    time_passes,
)
from tests.reliability.carrier import ANSWERED, BUSY, NO_ANSWER, Carrier, ScriptedTwilio
from tests.reliability.conftest import needs_postgresql_and_redis
from tests.reliability.servers import RedisServer
from tests.reliability.system import ProductSystem

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgresql_and_redis, pytest.mark.slow]

INVALID = "invalid"
# Each outcome, the calls its contact may get: the retry policy's limit for busy (2) and
# no-answer (3) lines, one for an answer, one (refused by Twilio) for an invalid number.
POLICY = {ANSWERED: 1, BUSY: 2, NO_ANSWER: 3, INVALID: 1}
END_STATES = {
    ANSWERED: Contact.State.DONE,
    BUSY: Contact.State.EXHAUSTED,
    NO_ANSWER: Contact.State.EXHAUSTED,
    INVALID: Contact.State.FAILED,
}
CONTACTS_PER_OUTCOME = 6
DEADLINE_SECONDS = 150


def test_racing_dispatchers_and_workers_dial_each_contact_as_often_as_the_policy_allows(
    tmp_path,
) -> None:
    # given: a campaign whose callees answer, are busy, do not answer or cannot be called
    outcomes = numbers(list(POLICY), CONTACTS_PER_OUTCOME)
    campaign = make_campaign(
        outcomes,
        max_concurrent_calls=12,
        calls_per_second=20,
        max_attempts=4,
        retry_policy={
            "busy": {"delay_minutes": 30, "max_attempts": 2},
            "no-answer": {"delay_minutes": 60, "max_attempts": 3},
            "failed": {"delay_minutes": 60, "max_attempts": 2},
            "voicemail": {"delay_minutes": 60, "max_attempts": 2},
        },
    )
    refused = {phone: 21211 for phone, outcome in outcomes.items() if outcome == INVALID}
    twilio = ScriptedTwilio(refused=refused, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    with (
        twilio,
        RedisServer(tmp_path) as redis,
        ProductSystem(tmp_path, env=product_env(redis, twilio), workers=3, beats=2) as system,
        Carrier(twilio, outcome=outcomes.get) as carrier,
    ):
        # when: it runs with dispatch ticks and dial tasks racing each other
        start_campaign(campaign=campaign)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not settled(campaign, carrier) and time.monotonic() < deadline:
            for _tick in range(3):
                system.send_task("calls.tasks.dispatch_calls_task")
            for call_id in Call.objects.filter(
                campaign=campaign, status=CallStatus.PENDING
            ).values_list("pk", flat=True):
                system.send_task("calls.tasks.place_call_task", call_id)
                system.send_task("calls.tasks.place_call_task", call_id)
            time_passes(campaign)
            time.sleep(0.3)

        # then: every contact reached its end, called exactly as often as the policy says
        assert settled(campaign, carrier), list(campaign.contacts.values_list("state", flat=True))
    assert carrier.problems == []
    assert most_live_at_once(campaign) <= campaign.max_concurrent_calls
    # and the race did happen: dial tasks found their call taken by another
    worker_logs = "".join(path.read_text() for path in tmp_path.glob("worker-*.log"))
    assert worker_logs.count("'not_pending'") >= CONTACTS_PER_OUTCOME
    dial_requests = [request.form["To"][0] for request in twilio.requests_to("POST", "/Calls.json")]
    for contact in campaign.contacts.all():
        outcome = outcomes[contact.phone]
        calls = list(contact.calls.order_by("attempt"))
        assert [call.attempt for call in calls] == list(range(1, POLICY[outcome] + 1)), outcome
        assert dial_requests.count(contact.phone) == POLICY[outcome], outcome
        assert twilio.creations_to(contact.phone) == (0 if outcome == INVALID else POLICY[outcome])
        assert (contact.state, contact.attempts) == (END_STATES[outcome], POLICY[outcome]), (
            outcome,
            contact.state_reason,
        )
