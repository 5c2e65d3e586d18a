"""Beat's scheduler: one beat sends across the cluster, the others wait as standbys.

django-celery-beat's DatabaseScheduler, sending only while it holds a lock in Redis
(``callcenter:beat:leader``, a redis-py Lock whose token is this process's). The lock lives
``BEAT_LOCK_SECONDS`` and the leader renews it at every tick, which comes at least three
times per lifetime (``max_interval``); a beat that cannot renew it (it expired while the
process stalled, someone deleted it, Redis is unreachable) stops sending at once. A standby
tries to take the lock at each of its ticks, so it leads within ``BEAT_LOCK_SECONDS`` plus a
tick of the leader's death; a leader shutting down cleanly gives the lock back at once.

Only the leader writes the code's ticks (CELERY_BEAT_SCHEDULE) to the database, when it
takes the lock: a standby of another release never rewrites them. Each entry's last run is
written back at least every ``BEAT_LOCK_SECONDS``, so a new leader resends at most what the
dead one sent in its last lock's lifetime (every task is safe to run twice).

Without REDIS_URL (the embedded default, one machine) there is nothing to lock: the
scheduler is DatabaseScheduler as it stands.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

logger = logging.getLogger(__name__)

LOCK_KEY = "callcenter:beat:leader"
# Redis answers in milliseconds: one that takes seconds is as good as unreachable, and a
# beat must not sleep past its lock's lifetime waiting for it.
REDIS_TIMEOUT_SECONDS = 2.0


class LeaderScheduler(DatabaseScheduler):
    """DatabaseScheduler that sends due tasks only while it holds the cluster's beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock_seconds: int = settings.BEAT_LOCK_SECONDS
        self.leading = not settings.REDIS_URL
        self._standby_logged = False
        self._lock: Lock | None = None
        if settings.REDIS_URL:
            client = redis.Redis.from_url(
                settings.CELERY_BROKER_URL,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            # Not thread-local: beat's thread ticks, but close() may run in another one.
            self._lock = client.lock(LOCK_KEY, timeout=self.lock_seconds, thread_local=False)
        super().__init__(*args, **kwargs)
        if self._lock is not None:
            # A tick at least three times per lock lifetime: the leader renews in time, and
            # the last written runs are never older than the lock.
            self.max_interval: float = min(float(self.max_interval), self.lock_seconds / 3)
            self.sync_every = self.lock_seconds

    def setup_schedule(self) -> None:
        # Writes the code's ticks to the database: the leader's job, done on taking the lock.
        if self._lock is None:
            super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lead():
            return float(self.max_interval)
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        # The tick renewed the lock before its reads of the database: check it again at the
        # moment of sending, which a slow database may have pushed past the lock's life.
        if self._lock is not None and not self._renew():
            self._dirty.discard(entry.name)  # not sent: its last run stays as it was
            return
        super().apply_entry(entry, producer=producer)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock is not None and self.leading:
                self.leading = False
                try:
                    self._lock.release()
                except (LockError, RedisError):
                    pass  # expired or unreachable: the standby waits out its lifetime
                logger.info("Beat gave up the lead (%s).", LOCK_KEY)

    def _lead(self) -> bool:
        """Whether this beat leads now: renews the lock it holds, or tries to take it."""
        if self._lock is None:
            return True
        if self.leading:
            return self._renew()
        try:
            taken = self._lock.acquire(blocking=False)
        except RedisError as exc:
            # Redis unreachable: sending would need it too (it is the broker), and another
            # beat may still lead. Wait.
            if not self._standby_logged:
                logger.warning("Beat cannot reach Redis to lead (%r): it sends nothing.", exc)
                self._standby_logged = True
            return False
        if not taken:
            if not self._standby_logged:
                logger.info(
                    "Beat is a standby: another beat holds %s. It takes over within %d s of "
                    "that one's end.",
                    LOCK_KEY,
                    self.lock_seconds,
                )
                self._standby_logged = True
            return False
        self.leading = True
        self._standby_logged = False
        logger.info("Beat leads (%s, renewed every tick).", LOCK_KEY)
        self._take_over()
        return self._renew()  # reading and writing the schedule took some of its life

    def _renew(self) -> bool:
        """Resets the lock's lifetime if this beat still holds it; else becomes a standby."""
        if self._lock is None:
            return True
        try:
            self._lock.reacquire()  # only while the token in Redis is ours
        except (LockError, RedisError) as exc:
            self.leading = False
            self._heap = None
            self._standby_logged = True
            logger.warning(
                "Beat lost the lead (%s: %r): it sends nothing until it leads again.",
                LOCK_KEY,
                exc,
            )
            return False
        return True

    def _take_over(self) -> None:
        """Read the schedule afresh (another beat ran it meanwhile) and write the code's
        ticks to the database."""
        self._initial_read = True
        self._heap = None
        super().setup_schedule()
