"""Project-level periodic tasks."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_CACHE_KEY = "heartbeat:worker"


@shared_task(ignore_result=False)
def heartbeat_task() -> str:
    """Record that beat ticked and a worker ran the tick; /health reports its age."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_CACHE_KEY, now, timeout=None)
    return now
