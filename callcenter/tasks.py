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


@shared_task(ignore_result=True)
def purge_idempotency_keys_task() -> int:
    """Forget the kept answers of idempotent API requests once they are old enough."""
    from callcenter.api import purge_idempotency_keys

    return purge_idempotency_keys()
