from __future__ import annotations

import logging

import pytest
from django_celery_beat.models import PeriodicTask

from voices import speech
from voices.models import Voice
from voices.tasks import sync_voices_task

pytestmark = pytest.mark.django_db


def test_sync_voices_task_returns_counts(fake_elevenlabs) -> None:
    assert sync_voices_task() == {"created": 2, "updated": 0, "unchanged": 0, "missing": 0}
    assert sync_voices_task() == {"created": 0, "updated": 0, "unchanged": 2, "missing": 0}


def test_sync_voices_task_without_key_does_nothing(fake_elevenlabs, settings, caplog) -> None:
    settings.ELEVENLABS_API_KEY = ""

    with caplog.at_level(logging.INFO, logger="voices.tasks"):
        result = sync_voices_task()

    assert result == {"created": 0, "updated": 0, "unchanged": 0, "missing": 0}
    assert fake_elevenlabs.requests == []
    assert not Voice.objects.exists()
    assert "ELEVENLABS_API_KEY is not set" in caplog.text


def test_sync_voices_task_leaves_unavailability_to_celery_retries(
    fake_elevenlabs, settings
) -> None:
    # given a provider that stays down through the adapter's own retries
    settings.ELEVENLABS_MAX_RETRIES = 1
    fake_elevenlabs.fail_next(status=503, times=5)

    # when the task runs outside a worker, the error surfaces instead of a retry
    with pytest.raises(speech.SpeechUnavailable):
        sync_voices_task()

    # then in a worker Celery retries it, a bounded number of times with backoff
    assert sync_voices_task.autoretry_for == (speech.SpeechUnavailable,)
    assert sync_voices_task.max_retries == 4
    assert sync_voices_task.retry_backoff and sync_voices_task.retry_backoff_max <= 15 * 60


def test_beat_syncs_voices_nightly_at_local_half_past_three(settings) -> None:
    # A periodic task in the database (voices/migrations/0003), retimed in the admin.
    entry = PeriodicTask.objects.get(name="sync-voices")

    assert entry.task == sync_voices_task.name == "voices.tasks.sync_voices_task"
    assert entry.enabled
    assert (entry.crontab.hour, entry.crontab.minute) == ("3", "30")
    assert str(entry.crontab.timezone) == settings.TIME_ZONE
