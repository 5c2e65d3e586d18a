"""Beat's schedule: ticks in code, what operators retime in the database (the admin)."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from numbers import Real

import pytest
from django.apps import apps
from django.urls import reverse
from django_celery_beat import schedulers
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from callcenter.celery import app as celery_app

pytestmark = pytest.mark.django_db

migration = importlib.import_module("voices.migrations.0003_periodic_tasks")
IN_THE_DATABASE = {"sync-voices", "purge-idempotency-keys"}


@pytest.fixture(autouse=True)
def _keep_the_test_connection(monkeypatch) -> None:
    """Beat closes stale database connections before each read; inside a test's
    transaction that would close the test's own connection."""
    monkeypatch.setattr(schedulers, "close_old_connections", lambda: None)


def test_migration_creates_the_retimable_periodic_tasks(settings) -> None:
    voice_sync = PeriodicTask.objects.get(name="sync-voices")
    purge = PeriodicTask.objects.get(name="purge-idempotency-keys")

    assert voice_sync.task == "voices.tasks.sync_voices_task"
    assert voice_sync.enabled
    assert (voice_sync.crontab.minute, voice_sync.crontab.hour) == ("30", "3")
    assert str(voice_sync.crontab.timezone) == settings.TIME_ZONE
    assert purge.task == "callcenter.tasks.purge_idempotency_keys_task"
    assert purge.enabled
    assert (purge.interval.every, purge.interval.period) == (1, IntervalSchedule.HOURS)


def test_migration_keeps_a_schedule_an_operator_changed() -> None:
    # given an operator moved the voice sync to 05:00 and disabled the purge
    five, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="5")
    PeriodicTask.objects.filter(name="sync-voices").update(crontab=five)
    PeriodicTask.objects.filter(name="purge-idempotency-keys").update(enabled=False)

    # when the migration runs again (a database restored from before it, say)
    migration.create_periodic_tasks(apps, None)

    # then their choices stand, and nothing is doubled
    assert PeriodicTask.objects.get(name="sync-voices").crontab == five
    assert not PeriodicTask.objects.get(name="purge-idempotency-keys").enabled
    assert PeriodicTask.objects.filter(name__in=IN_THE_DATABASE).count() == 2


def test_migration_reverses_and_applies_again() -> None:
    migration.delete_periodic_tasks(apps, None)
    assert not PeriodicTask.objects.filter(name__in=IN_THE_DATABASE).exists()

    migration.create_periodic_tasks(apps, None)
    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= IN_THE_DATABASE


def test_beat_schedule_in_code_holds_only_ticks(settings) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE

    assert not IN_THE_DATABASE & schedule.keys()
    for name, entry in schedule.items():
        # a tick: a period in seconds, a minute at most (no crontab, no hourly job)
        assert isinstance(entry["schedule"], Real), name
        assert 0 < entry["schedule"] <= 60, name


def test_database_scheduler_runs_the_code_ticks_and_the_database_tasks(
    settings, monkeypatch
) -> None:
    # given the time is 03:00 where the project is: the scheduler loads a crontab task
    # only within two hours of the hour it runs at
    three_local = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)  # Europe/Madrid is UTC+1 then
    settings.TIME_ZONE = "Europe/Madrid"
    monkeypatch.setattr(schedulers, "aware_now", lambda: three_local)

    # when beat starts on the test database
    scheduler = DatabaseScheduler(app=celery_app)
    schedule = scheduler.schedule

    # then it has every tick of the code and both tasks of the database
    assert settings.CELERY_BEAT_SCHEDULE.keys() | IN_THE_DATABASE <= schedule.keys()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert schedule[name].task == entry["task"]
        assert schedule[name].schedule.run_every == timedelta(seconds=entry["schedule"])
    assert schedule["sync-voices"].task == "voices.tasks.sync_voices_task"
    assert schedule["purge-idempotency-keys"].schedule.run_every == timedelta(hours=1)
    # the code's ticks were written to the database, where the admin shows them
    assert PeriodicTask.objects.filter(name="dispatch-calls", interval__every=2).exists()


def test_database_scheduler_restores_a_tick_edited_in_the_admin() -> None:
    # given the dispatcher's tick was slowed down in the admin
    DatabaseScheduler(app=celery_app)
    slow, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="dispatch-calls").update(interval=slow)

    # when beat starts again
    schedule = DatabaseScheduler(app=celery_app).schedule

    # then the code's period is back: the pacing is sized for it
    assert schedule["dispatch-calls"].schedule.run_every == timedelta(seconds=2)


def test_admin_lists_and_opens_the_periodic_tasks(admin_client) -> None:
    voice_sync = PeriodicTask.objects.get(name="sync-voices")

    changelist = admin_client.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    change = admin_client.get(
        reverse("admin:django_celery_beat_periodictask_change", args=[voice_sync.pk])
    )
    crontabs = admin_client.get(reverse("admin:django_celery_beat_crontabschedule_changelist"))

    assert changelist.status_code == change.status_code == crontabs.status_code == 200
    assert {"sync-voices", "purge-idempotency-keys"} <= {
        task.name for task in changelist.context["cl"].result_list
    }
