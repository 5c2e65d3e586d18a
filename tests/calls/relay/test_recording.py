"""A relay call of a recording campaign is recorded once the welcome greeting (with the
announcement) has been played: at the callee's first words, not at the socket's setup.
Twilio's side is the sandbox carrier, which holds the call and its recordings."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from calls.models import Call
from calls.telephony.sandbox.state import call_key, live_recording_key
from tests.calls.relay.conftest import answered, eventually, prompt, reply, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recording_relay_call(relay_call: Call) -> Call:
    relay_call.campaign.record_calls = True
    relay_call.campaign.save(update_fields=["record_calls"])
    # The carrier's side of the call: answered, in progress.
    sid = relay_call.provider_sid
    cache.set(call_key(sid), {"sid": sid, "status": "in-progress", "params": {}})
    return relay_call


def test_a_relay_call_is_recorded_from_the_callers_first_words(
    recording_relay_call, fake_openai, relay_server
) -> None:
    answered(recording_relay_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes.")
    sid = recording_relay_call.provider_sid
    with relay_server.open_session(recording_relay_call) as socket:
        # the greeting is being said: nothing is recorded yet
        time.sleep(0.3)
        assert cache.get(live_recording_key(sid)) is None
        send(socket, prompt("Sí, iré el martes."))
        reply(socket)
        started = eventually(lambda: cache.get(live_recording_key(sid)))

    assert started["callback"].endswith(f"/twilio/calls/{recording_relay_call.pk}/recording#rc=3")
    # the call keeps the SID once the carrier has answered (the server's own thread)
    calls = Call.objects.filter(pk=recording_relay_call.pk, recording_sid=started["sid"])
    call = eventually(calls.first)
    assert call.recording_started_at is not None


def test_a_relay_call_of_a_campaign_that_does_not_record_is_not(
    recording_relay_call, fake_openai, relay_server
) -> None:
    recording_relay_call.campaign.record_calls = False
    recording_relay_call.campaign.save(update_fields=["record_calls"])
    answered(recording_relay_call)
    fake_openai.queue_reply("Perfecto.")
    with relay_server.open_session(recording_relay_call) as socket:
        send(socket, prompt("Sí."))
        reply(socket)

    assert cache.get(live_recording_key(recording_relay_call.provider_sid)) is None
    recording_relay_call.refresh_from_db()
    assert recording_relay_call.recording_started_at is None
