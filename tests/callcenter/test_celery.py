"""A worker that starts with an ElevenLabs key and an empty voice catalogue fetches it,
once for all the workers that start together."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from tests.fakes.elevenlabs import FakeElevenLabs, RecordedRequest
from tests.processes import child_env, other_redis_database
from voices.models import Voice
from voices.services import FIRST_SYNC_CLAIM, SYNCED_KEY

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The claim is Redis's SET NX; the embedded default's file cache runs one worker.
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (.ci/run starts it)"),
]


@pytest.mark.slow
def test_workers_starting_together_fetch_an_empty_voice_catalogue_once(tmp_path) -> None:
    # given an empty catalogue, a broker and cache of the test's own, no claim left there
    # by an earlier run, and ElevenLabs holding its listing until every worker is ready
    assert not Voice.objects.exists()
    redis_url = other_redis_database(settings.REDIS_URL)
    env = child_env(
        REDIS_URL=redis_url,
        DATA_DIR=str(tmp_path),
        CALLCENTER_LOCAL_FAKES="1",  # the ElevenLabs key below reaches the workers
        ELEVENLABS_API_KEY="first-sync",
        ELEVENLABS_TIMEOUT="60",
        OPENAI_API_KEY="",
        TWILIO_ACCOUNT_SID="",
        TWILIO_AUTH_TOKEN="",
    )
    # The workers' cache: the database after their broker's, as settings.py has it.
    workers_cache = RedisCache(
        other_redis_database(settings.CACHES["default"]["LOCATION"]),
        {"KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"]},
    )
    workers_cache.delete_many([FIRST_SYNC_CLAIM, SYNCED_KEY])
    every_worker_ready = threading.Event()

    def hold_the_listing(request: RecordedRequest) -> float:
        every_worker_ready.wait(90)
        return 0.0

    with FakeElevenLabs(api_key="first-sync", delay=hold_the_listing) as elevenlabs:
        env["ELEVENLABS_BASE_URL"] = elevenlabs.url
        logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
        workers = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "--app", "callcenter", "worker"),
                    *("--pool", "solo", "--loglevel", "INFO"),
                    *("--without-gossip", "--without-mingle"),
                    *("--hostname", f"first-sync-{n}-{tmp_path.name}@%h"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            for n, log in enumerate(logs)
        ]
        try:
            # when both have started (each checked the catalogue at its worker_ready)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not all(
                "Voice sync" in log.read_text() for log in logs
            ):
                time.sleep(0.2)
            every_worker_ready.set()
            while time.monotonic() < deadline and Voice.objects.count() < 2:
                time.sleep(0.2)
            time.sleep(2)  # room for a second sync, if one had been queued
        finally:
            every_worker_ready.set()
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
        texts = [log.read_text() for log in logs]

    # then one of them queued the sync, the other found it claimed, and ElevenLabs was
    # asked for its voices once
    assert sorted(text.count("Voice sync queued") for text in texts) == [0, 1], texts
    assert sum(text.count("Voice sync not queued") for text in texts) == 1, texts
    assert len(elevenlabs.requests_to("/v2/voices")) == 1
    assert set(Voice.objects.values_list("name", flat=True)) == {"Sarah", "George"}
