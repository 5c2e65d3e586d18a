"""Periodic work on the voice catalogue."""

from __future__ import annotations

import logging

from celery import shared_task

from voices import services, speech

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(speech.SpeechUnavailable,),
    retry_backoff=60,
    retry_backoff_max=15 * 60,
    retry_jitter=True,
    max_retries=4,
)
def sync_voices_task() -> dict[str, int]:
    """Sync the catalogue from ElevenLabs (nightly, at a worker's first start, when a
    campaign start could not reach ElevenLabs); without an API key, do nothing."""
    if not speech.is_configured():
        logger.info("Voice sync skipped: ELEVENLABS_API_KEY is not set")
        return services.SyncResult().counts()
    return services.sync_voices().counts()
