"""Beat's scheduler (callcenter/beat.py): one beat sends while it holds the Redis lock, the
others wait as standbys; without Redis it is DatabaseScheduler as it stands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat import schedulers
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from callcenter.beat import LOCK_KEY, LeaderScheduler
from callcenter.celery import app as celery_app
from tests.callcenter.test_settings import load_settings, settings_error

pytestmark = pytest.mark.django_db

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (.ci/run starts it)")


class RecordingScheduler(LeaderScheduler):
    """The scheduler, recording the entries it sends instead of queueing them."""

    started: list[RecordingScheduler] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)
        self.started.append(self)

    def apply_entry(self, entry, producer=None) -> None:
        self.sent.append(entry.name)


@pytest.fixture(autouse=True)
def _keep_the_test_connection(monkeypatch) -> None:
    """Beat closes stale database connections before each read; inside a test's
    transaction that would close the test's own connection."""
    monkeypatch.setattr(schedulers, "close_old_connections", lambda: None)


@pytest.fixture(autouse=True)
def _stop_the_beats() -> Iterator[None]:
    """Beat writes the runs it sent when it stops: in the test's transaction, not at exit."""
    yield
    while RecordingScheduler.started:
        RecordingScheduler.started.pop().close()


@pytest.fixture
def lock_redis(settings) -> Iterator[redis.Redis]:
    """The broker's Redis, where the lock lives, without a lock left by another test."""
    settings.BEAT_LOCK_SECONDS = 3
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(LOCK_KEY)
    yield client
    client.delete(LOCK_KEY)


def run(*beats: LeaderScheduler, seconds: float = 3.5) -> None:
    """Tick ``beats`` for ``seconds`` as beat's loop does (the dispatcher's tick is 2 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waits = [beat.tick() for beat in beats]
        time.sleep(max(0.0, min(*waits, 0.1)))


@needs_redis
def test_beat_leads_alone_and_a_second_one_waits(lock_redis, caplog) -> None:
    # given two beats (two hosts, say) started together
    first, second = RecordingScheduler(app=celery_app), RecordingScheduler(app=celery_app)

    # when both tick
    run(first, second)

    # then the first took the lock and sends; the second sends nothing
    assert first.leading and not second.leading
    assert "dispatch-calls" in first.sent
    assert second.sent == []
    assert int(lock_redis.pttl(LOCK_KEY)) > 0
    # the standby said so once, not at each of its ticks
    assert sum("Beat is a standby" in r.getMessage() for r in caplog.records) == 1


@needs_redis
def test_beat_renews_its_lock_at_every_tick(lock_redis) -> None:
    scheduler = RecordingScheduler(app=celery_app)
    scheduler.tick()
    lock_redis.pexpire(LOCK_KEY, 500)

    scheduler.tick()

    # the lifetime is back to BEAT_LOCK_SECONDS
    assert int(lock_redis.pttl(LOCK_KEY)) > 2000


@needs_redis
def test_beat_ticks_at_least_three_times_per_lock_lifetime(lock_redis) -> None:
    scheduler = RecordingScheduler(app=celery_app)

    assert scheduler.max_interval <= settings.BEAT_LOCK_SECONDS / 3
    # a standby too: it waits no longer than that before trying the lock again
    scheduler.tick()
    assert RecordingScheduler(app=celery_app).tick() <= settings.BEAT_LOCK_SECONDS / 3


@needs_redis
def test_beat_that_loses_its_lock_stops_sending_at_once(lock_redis) -> None:
    # given a leading beat
    scheduler = RecordingScheduler(app=celery_app)
    run(scheduler)
    assert scheduler.sent

    # when its lock goes (it expired while the process stalled; here, deleted) and another
    # beat takes it
    lock_redis.delete(LOCK_KEY)
    other = RecordingScheduler(app=celery_app)
    other.tick()
    scheduler.sent.clear()
    run(scheduler, other)

    # then the first sends nothing more, and the other leads
    assert scheduler.sent == []
    assert not scheduler.leading and other.leading
    assert "dispatch-calls" in other.sent


@needs_redis
def test_beat_that_lost_its_lock_leads_again_when_it_is_free(lock_redis) -> None:
    scheduler = RecordingScheduler(app=celery_app)
    scheduler.tick()
    lock_redis.set(LOCK_KEY, "another beat's token", px=3000)
    scheduler.tick()
    assert not scheduler.leading

    lock_redis.delete(LOCK_KEY)
    scheduler.sent.clear()
    run(scheduler)

    assert scheduler.leading
    assert "dispatch-calls" in scheduler.sent


@needs_redis
def test_beat_that_shuts_down_hands_the_lock_over(lock_redis) -> None:
    leader, standby = RecordingScheduler(app=celery_app), RecordingScheduler(app=celery_app)
    leader.tick()
    standby.tick()
    assert not standby.leading

    leader.close()
    run(standby)

    # the standby leads at its next tick, not a lock lifetime later
    assert standby.leading
    assert "dispatch-calls" in standby.sent


@needs_redis
def test_standby_leaves_the_schedule_in_the_database_alone(lock_redis) -> None:
    # given a leader, and the dispatcher's tick slowed down in the admin since it started
    leader = RecordingScheduler(app=celery_app)
    leader.tick()
    slow, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="dispatch-calls").update(interval=slow)

    # when a second beat (of another release, say) starts and waits as a standby
    standby = RecordingScheduler(app=celery_app)
    run(standby, seconds=0.3)

    # then it wrote nothing: the code's ticks are the leader's to write
    assert PeriodicTask.objects.get(name="dispatch-calls").interval == slow

    # and when it takes over, it writes them
    leader.close()
    standby.tick()
    assert PeriodicTask.objects.get(name="dispatch-calls").interval.every == 2


@needs_redis
def test_beat_sends_nothing_while_redis_is_unreachable(settings, closed_port, caplog) -> None:
    # given the dispatcher's tick long overdue
    DatabaseScheduler(app=celery_app)  # writes the code's ticks to the database
    an_hour_ago = timezone.now() - timedelta(hours=1)
    PeriodicTask.objects.filter(name="dispatch-calls").update(last_run_at=an_hour_ago)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"
    scheduler = RecordingScheduler(app=celery_app)

    run(scheduler, seconds=1)

    assert scheduler.sent == []
    assert not scheduler.leading
    # said once, not at every tick
    assert sum("cannot reach Redis" in r.getMessage() for r in caplog.records) == 1


def test_beat_without_redis_is_the_database_scheduler(settings) -> None:
    # given the embedded default: one machine, no Redis
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "filesystem://localhost/"

    scheduler = RecordingScheduler(app=celery_app)
    run(scheduler)

    # then it leads without a lock and wrote the code's ticks at its start
    assert scheduler.leading
    assert "dispatch-calls" in scheduler.sent
    assert PeriodicTask.objects.filter(name="dispatch-calls", interval__every=2).exists()


def test_beat_uses_the_leader_scheduler() -> None:
    assert celery_app.conf.beat_scheduler == "callcenter.beat:LeaderScheduler"


def test_beat_lock_seconds_defaults_to_30_and_refuses_a_lock_too_short(
    monkeypatch, tmp_path
) -> None:
    assert load_settings(monkeypatch, tmp_path)["BEAT_LOCK_SECONDS"] == 30

    error = settings_error(monkeypatch, tmp_path, BEAT_LOCK_SECONDS="1")

    assert "BEAT_LOCK_SECONDS" in error and "'1'" in error
