from __future__ import annotations

import pytest
from django.core.cache import cache

from callcenter.tasks import HEARTBEAT_CACHE_KEY, heartbeat_task


def test_heartbeat_task_records_time_in_cache(db) -> None:
    value = heartbeat_task()

    assert cache.get(HEARTBEAT_CACHE_KEY) == value


@pytest.mark.django_db(transaction=True)
def test_heartbeat_task_runs_in_a_real_worker(celery_worker_process) -> None:
    # given a worker process on the configured broker (filesystem or Redis)
    # when the task is queued as beat queues it
    result = heartbeat_task.delay()

    # then the worker runs it and its result and side effect come back
    value = result.get(timeout=60)
    assert cache.get(HEARTBEAT_CACHE_KEY) == value
    assert celery_worker_process.poll() is None


def test_beat_schedule_names_registered_tasks(settings) -> None:
    from callcenter.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks
