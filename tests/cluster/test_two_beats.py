"""Two real `celery beat` processes on one Redis and one PostgreSQL (two hosts, say): one
sends, the other waits; when the sender dies, the other takes over within the lock's life."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from callcenter.beat import LOCK_KEY
from tests.processes import child_env, other_redis_database

ROOT = Path(__file__).resolve().parents[2]
LOCK_SECONDS = 3
SENT = "Scheduler: Sending due task"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(
        not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
        reason="needs PostgreSQL and Redis (.ci/run starts them)",
    ),
]


class Beat:
    """A `celery beat` process whose log is a file of the test's."""

    def __init__(self, name: str, folder: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "callcenter", "beat", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def sent(self) -> int:
        return sum(SENT in line for line in self.lines())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        print(f"--- {self.name} (last lines) ---")
        print("\n".join(self.lines()[-30:]))


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """A broker of the test's own (no worker of the session takes its tasks), emptied."""
    client = redis.Redis.from_url(other_redis_database(settings.REDIS_URL))
    client.flushdb()
    yield client
    client.flushdb()


def wait_for(condition, timeout: float, what: str) -> float:
    """Waits until ``condition()``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def queued(client: redis.Redis) -> int:
    """Task messages waiting in the broker (kombu keeps each queue as a Redis list)."""
    return sum(client.llen(key) for key in client.keys() if client.type(key) == b"list")


def test_two_beats_send_once_and_the_standby_takes_over(tmp_path, broker) -> None:
    # given two beats started together on the same Redis and database
    env = child_env(
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        BEAT_LOCK_SECONDS=str(LOCK_SECONDS),
        DATA_DIR=str(tmp_path),
    )
    beats = [Beat(f"beat-{n}", tmp_path, env) for n in (1, 2)]
    try:
        wait_for(lambda: any(beat.sent() for beat in beats), 60, "neither beat sent")
        leader, standby = sorted(beats, key=Beat.sent, reverse=True)

        # when they run for several lifetimes of the lock
        time.sleep(5 * LOCK_SECONDS)

        # then one beat sent the ticks and the other nothing: the leader kept renewing
        # its lock, and every message in the broker is one the leader logged
        assert leader.sent() >= 5 * LOCK_SECONDS // 2  # the dispatcher's 2-second tick
        assert standby.sent() == 0
        assert any("Beat is a standby" in line for line in standby.lines())
        in_broker = queued(broker)  # read first: beat logs a task, then sends it
        assert leader.sent() - 1 <= in_broker <= leader.sent()

        # when the leader dies without a word (kill -9: its lock stays until it expires)
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait()
        took = wait_for(standby.sent, 4 * LOCK_SECONDS, "the standby did not take over")

        # then the standby took over within the lock's life and a tick or so
        assert took <= LOCK_SECONDS + 3, took
        assert any("Beat leads" in line for line in standby.lines())
        assert broker.get(LOCK_KEY) is not None
    finally:
        for beat in beats:
            beat.stop()


def test_a_beat_stopped_cleanly_hands_over_at_once(tmp_path, broker) -> None:
    env = child_env(
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        # long: a handover within it comes from the release, not from the lock expiring
        BEAT_LOCK_SECONDS="60",
        DATA_DIR=str(tmp_path),
    )
    first = Beat("first", tmp_path, env)
    second = None
    try:
        wait_for(first.sent, 60, "the first beat did not send")
        second = Beat("second", tmp_path, env)
        wait_for(
            lambda: any("Beat is a standby" in line for line in second.lines()),
            60,
            "the second beat did not start as a standby",
        )

        first.stop()
        # the standby tries the lock every 20 s (a third of its life) at most
        took = wait_for(second.sent, 30, "the standby did not take over")

        assert took < 60
    finally:
        first.stop()
        if second is not None:
            second.stop()
