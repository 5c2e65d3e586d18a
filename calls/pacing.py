"""Token buckets for calls per second, shared by every dispatcher and worker.

Twilio queues API calls above the account's CPS and starts them later, possibly outside
the callee's legal window (https://help.twilio.com/articles/223180028), so the dialer never
asks faster than the limit: the account-wide bucket (TWILIO_MAX_CPS) and each campaign's
own bucket must both grant a token before a call is created.

With Redis the bucket is a Lua script (atomic across machines); on the embedded default it
is a small JSON state under an exclusive file lock (atomic across the processes of the one
machine that embedded mode runs on).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import time
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

# KEYS[1]: bucket; ARGV: rate (tokens/s), capacity, wanted, now (s). Returns tokens granted.
_TAKE_SCRIPT = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local wanted, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate) end
local granted = math.min(wanted, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return granted
"""


def take_tokens(*, bucket: str, rate: float, capacity: float, wanted: int) -> int:
    """Take up to ``wanted`` whole tokens from ``bucket``, refilled at ``rate`` per second
    up to ``capacity``; returns how many were granted (0 when the bucket is dry)."""
    if wanted <= 0 or rate <= 0:
        return 0
    if settings.REDIS_URL:
        return _take_redis(bucket, rate, capacity, wanted)
    return _take_file(bucket, rate, capacity, wanted)


def _take_redis(bucket: str, rate: float, capacity: float, wanted: int) -> int:
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    # Redis's clock, not ours: every machine then refills the bucket against one time.
    seconds, micros = redis.time()
    now = seconds + micros / 1_000_000
    script = redis.register_script(_TAKE_SCRIPT)
    return int(script(keys=[f"callcenter:pacing:{bucket}"], args=[rate, capacity, wanted, now]))


def _take_file(bucket: str, rate: float, capacity: float, wanted: int) -> int:
    folder = Path(settings.DATA_DIR) / "pacing"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{bucket}.json").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        raw = handle.read()
        state = json.loads(raw) if raw else {}
        now = time.time()
        tokens = float(state.get("tokens", capacity))
        at = float(state.get("at", now))
        if now > at:
            tokens = min(capacity, tokens + (now - at) * rate)
        granted = max(0, min(wanted, int(tokens)))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"tokens": tokens - granted, "at": max(now, at)}))
        return granted


# --- Backing off after Twilio's concurrency limit ---------------------------------------

# After Twilio refuses a call for the account's concurrency limit (10004), the campaign
# dials nothing for this long, doubling on each refusal in a row up to the cap.
BACKOFF_FIRST = datetime.timedelta(seconds=15)
BACKOFF_CAP = datetime.timedelta(minutes=5)
# When the contact of a call Twilio could not be reached for is called again.
UNAVAILABLE_RETRY_DELAY = datetime.timedelta(minutes=5)


def _backoff_key(campaign_id: int) -> str:
    return f"calls:dial-backoff:{campaign_id}"


def back_off_campaign(campaign_id: int) -> datetime.timedelta:
    """Hold ``campaign_id``'s dialling back, longer at each refusal in a row; returns for how
    long. Shared through the cache, so every dispatcher and worker sees it."""
    state = cache.get(_backoff_key(campaign_id)) or {}
    level = int(state.get("level", 0)) + 1
    wait = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (level - 1))
    until = time.time() + wait.total_seconds()
    # Kept past the wait so that a refusal soon after it counts as "in a row".
    cache.set(
        _backoff_key(campaign_id),
        {"level": level, "until": until},
        timeout=int(wait.total_seconds() + BACKOFF_CAP.total_seconds()),
    )
    return wait


def clear_backoff(campaign_id: int) -> None:
    """A call went through: the next refusal starts again from the first wait."""
    cache.delete(_backoff_key(campaign_id))


def backing_off(campaign_ids: list[int]) -> set[int]:
    """Which of ``campaign_ids`` are held back now."""
    states = cache.get_many([_backoff_key(pk) for pk in campaign_ids])
    now = time.time()
    return {pk for pk in campaign_ids if states.get(_backoff_key(pk), {}).get("until", 0) > now}
