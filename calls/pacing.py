"""Token buckets for calls per second, shared by every dispatcher and worker.

Twilio queues API calls above the account's CPS and starts them later, possibly outside
the callee's legal window (reference/twilio.md §1), so the dialer never asks faster than
the limit: the account-wide bucket (TWILIO_MAX_CPS) and each campaign's own bucket must
both grant a token before a call is created.

With Redis the bucket is a Lua script (atomic across machines); on the embedded default it
is a small JSON state under an exclusive file lock (atomic across the processes of the one
machine that embedded mode runs on).
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from django.conf import settings

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
