"""One limit on requests in flight to ElevenLabs, shared by every process of the deployment.

ElevenLabs limits how many requests an account may have running at once (2 on Free, 3 on
Starter, 5 on Creator, 10 on Pro, 15 on Scale: help.elevenlabs.io, "API Error Code 429")
and answers 429 over it. Every request the adapter makes holds one of
ELEVENLABS_CONCURRENCY slots while it runs (0: no limit), so the account's limit is met
here, where a caller can wait for its turn, instead of being found out by a 429.

With Redis the slots are leases in a sorted set, taken by a Lua script (atomic across
machines); a lease expires, so a process killed while holding one frees it after at most
``lease_seconds()``. On the embedded default a slot is an exclusive ``flock`` on one of
ELEVENLABS_CONCURRENCY files in DATA_DIR (across the processes of the one machine embedded
mode runs on); the kernel frees it when the holder's process dies.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

# Imported here, not when a thread first needs Redis: threads importing a package at once
# can deadlock on its import locks (seen with redis.asyncio).
from django_redis import get_redis_connection
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REDIS_KEY = "callcenter:elevenlabs:slots"
# How often a waiter looks for a free slot; jittered so that waiters do not move in step.
POLL_SECONDS = 0.02

# KEYS[1]: the leases (member: token, score: expiry in ms of Redis's clock).
# ARGV: limit, token, lease (ms). Returns 1 when the lease was taken, else 0.
# Redis's clock, not the callers': every machine then expires leases against one time.
_ACQUIRE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease + 60000 then
  redis.call('PEXPIRE', KEYS[1], lease + 60000)
end
return 1
"""


@dataclass
class Slot:
    """One slot held; ``release()`` gives it back (a second call does nothing)."""

    _release: Callable[[], None] | None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def limit() -> int:
    """How many requests may be in flight at once across the deployment; 0: no limit."""
    return max(0, int(settings.ELEVENLABS_CONCURRENCY))


def lease_seconds() -> float:
    """How long a Redis lease lasts: longer than any one attempt runs (its timeout applies
    to each read, not to the whole answer), short enough that a killed process's slot
    comes back soon."""
    return 2 * float(settings.ELEVENLABS_TIMEOUT) + 5.0


def acquire(*, until: float, lease: float | None = None) -> Slot | None:
    """Take a slot, waiting for one until ``until`` (a ``time.monotonic()`` instant);
    None when none came free by then. Without a limit, a slot that holds nothing.

    ``lease`` (Redis only) overrides ``lease_seconds()``. When Redis cannot be reached the
    request goes ahead without a slot (ElevenLabs' own 429 still guards the account): a
    broken limiter must not silence every call.
    """
    slots = limit()
    if slots == 0:
        return Slot(None)
    if settings.REDIS_URL:
        return _acquire_redis(slots, until, lease if lease is not None else lease_seconds())
    return _acquire_file(slots, until)


def _wait(until: float) -> bool:
    """Sleep one poll (never past ``until``); False when ``until`` has passed."""
    left = until - time.monotonic()
    if left <= 0:
        return False
    time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # noqa: S311
    return True


def _acquire_redis(slots: int, until: float, lease: float) -> Slot | None:
    try:
        redis = get_redis_connection("default")
        script = redis.register_script(_ACQUIRE_SCRIPT)
        token = secrets.token_hex(8)
        lease_ms = max(1, int(lease * 1000))
        while not script(keys=[REDIS_KEY], args=[slots, token, lease_ms]):
            if not _wait(until):
                return None
    except RedisError as exc:
        logger.warning("ElevenLabs concurrency limit not applied, Redis failed: %r", exc)
        return Slot(None)

    def release() -> None:
        try:
            redis.zrem(REDIS_KEY, token)
        except RedisError as exc:  # the lease expires on its own
            logger.warning("could not release an ElevenLabs slot, it will expire: %r", exc)

    return Slot(release)


def _acquire_file(slots: int, until: float) -> Slot | None:
    folder = Path(settings.DATA_DIR) / "elevenlabs-slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        # A random order spreads the waiters over the files instead of all on the first.
        for index in random.sample(range(slots), slots):
            handle = _try_lock(folder / f"slot-{index}.lock")
            if handle is not None:
                return Slot(functools.partial(_unlock, handle))
        if not _wait(until):
            return None


def _try_lock(path: Path) -> IO[bytes] | None:
    # Each attempt opens the file anew: flock belongs to the open file, so two threads of
    # one process exclude each other as two processes do.
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _unlock(handle: IO[bytes]) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
