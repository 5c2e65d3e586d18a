"""Two web services behind nginx on one database and one bucket (bench/cluster.py's setup,
moto's S3 server, a handful of calls): the calls are split across both, Twilio's signatures over the
public URL hold through the proxy and forged ones do not, clips are served, and nothing is
handled twice, not even a callback delivered to each backend. Skipped without nginx, or
without PostgreSQL and Redis (the servers share them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from bench import cluster, turns
from bench.cluster import Cluster, ProxiedTwilio
from calls.models import Call, CallEvent
from calls.telephony import signatures
from voices.models import SpeechClip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
        reason="the servers share PostgreSQL and Redis, as in production (.ci/run starts them)",
    ),
    pytest.mark.skipif(cluster.nginx_binary() is None, reason="nginx is not installed"),
]


@pytest.fixture(scope="module")
def target(django_db_setup: None) -> Iterator[Cluster]:
    """Two backends of one worker each behind nginx, their media in a bucket of moto's S3
    server, with the fake model and speech."""
    with (
        cluster.media("s3", clip_urls="app") as storage,
        turns.fakes(chunk_delay=0.0),
        cluster.cluster(workers=1, **storage) as running,
    ):
        yield running


def live_calls(count: int) -> list[int]:
    """``count`` answered and greeted AI calls of one campaign (as the bench makes them)."""
    call = turns._ai_call()
    return [call.pk, *turns._live_calls(call.campaign, count - 1)]


def test_calls_through_the_proxy_are_split_signed_and_answered_once(target: Cluster) -> None:
    # given four live calls, and what the backends refused so far
    calls = live_calls(4)
    refused_before = cluster.signature_failures(target)
    twilio = ProxiedTwilio(target)

    # when they talk through the proxy, each call's last status callback delivered again
    # to the backend that did not answer the first delivery
    load = asyncio.run(turns._load(twilio, calls, steady_seconds=8))

    # then both backends answered turns and callbacks, and nothing failed
    seen = twilio.seen
    assert (load.turn_errors, load.status_errors) == (0, 0), load.problems
    for backend in target.backends:
        assert seen.served[f"turn {backend}"] > 0, seen.served
        assert seen.served[f"status {backend}"] > 0, seen.served
    assert set(load.turns_sent) == set(calls)
    # every webhook's signature, made over the public URL, held at whichever backend
    assert seen.refused == 0
    assert cluster.signature_failures(target) == refused_before
    # every clip played was fetched through the proxy, and is audio, from the bucket
    assert seen.clips_ok >= sum(load.turns_sent.values())
    assert seen.clips_failed == 0, seen.problems
    assert set(seen.clips_from) == {"app"}
    played = SpeechClip.objects.filter(status=SpeechClip.Status.READY)
    assert {f"clips/{clip.token}.mp3" for clip in played} <= set(
        cluster.bucket_keys(target.environment)
    )
    assert played.count() >= sum(load.turns_sent.values())
    assert not any((Path(settings.MEDIA_ROOT) / clip.audio.name).exists() for clip in played)
    # each line answered and kept once; each status event kept once, though the repeated
    # one reached the other process
    assert seen.redelivered_elsewhere == len(calls)
    kept = cluster.recorded(calls, load, callbacks_each=3)
    assert kept == cluster.Recorded(0, 0, 0, 0, 0, 0)
    assert set(Call.objects.filter(pk__in=calls).values_list("status", flat=True)) == {
        Call.Status.IN_PROGRESS
    }


def test_the_proxy_passes_no_unsigned_or_forged_webhook(target: Cluster) -> None:
    [call_id] = live_calls(1)
    path = f"/twilio/calls/{call_id}/status"
    form = {"CallSid": f"CA{call_id:032d}", "CallStatus": "ringing", "SequenceNumber": "1"}
    backend_url = next(iter(target.backends.values()))
    twilio = ProxiedTwilio(target)
    refused_before = cluster.signature_failures(target)
    forged = {
        "unsigned": {},
        # signed for the backend's own address, not the public URL Twilio was given
        "another URL": {
            "X-Twilio-Signature": signatures.compute_signature(
                token=_token(), url=backend_url + path, params=form
            )
        },
        "another key": {
            "X-Twilio-Signature": signatures.compute_signature(
                token="not-the-key", url=target.url + path, params=form
            )
        },
    }

    answers = {
        name: httpx.post(target.url + path, data=form, headers=headers, timeout=30).status_code
        for name, headers in forged.items()
    }
    signed = httpx.post(
        target.url + path, data=form, headers=twilio.headers(path, form), timeout=30
    )

    assert answers == {name: 403 for name in forged}
    assert cluster.signature_failures(target) == refused_before + len(forged)
    assert signed.status_code == 204
    assert CallEvent.objects.filter(call_id=call_id).count() == 1


def test_a_callback_delivered_to_both_backends_at_once_is_recorded_once(
    target: Cluster,
) -> None:
    # given a ringing call
    [call_id] = live_calls(1)
    Call.objects.filter(pk=call_id).update(status=Call.Status.RINGING, answered_at=None)
    path = f"/twilio/calls/{call_id}/status"
    form = {
        "CallSid": f"CA{call_id:032d}",
        "CallStatus": "in-progress",
        "SequenceNumber": "2",
        "Timestamp": "Sat, 28 Nov 2026 10:00:00 +0000",
    }
    twilio = ProxiedTwilio(target)

    # when Twilio's callback and its retry reach the two backends at the same moment
    async def both() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(twilio.post_to(backend, client, path, form) for backend in target.backends)
            )
        return [answer.status_code for answer in answers]

    answers = asyncio.run(both())

    # then both are acknowledged, and one event is kept and applied
    assert answers == [204] * len(target.backends)
    assert CallEvent.objects.filter(call_id=call_id, kind=CallEvent.Kind.STATUS).count() == 1
    call = Call.objects.get(pk=call_id)
    assert call.status == Call.Status.IN_PROGRESS
    assert call.answered_at is not None


def _token() -> str:
    from calls import telephony

    return telephony.webhook_auth_token()
