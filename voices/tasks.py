"""Periodic work on the voice catalogue."""

from __future__ import annotations

import dataclasses
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
    """Sync the catalogue from ElevenLabs (nightly); without an API key, do nothing."""
    if not speech.is_configured():
        logger.info("Voice sync skipped: ELEVENLABS_API_KEY is not set")
        return dataclasses.asdict(services.SyncResult())
    return dataclasses.asdict(services.sync_voices())
