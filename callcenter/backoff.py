"""How long a vendor adapter waits before trying again: shared by every adapter."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

BACKOFF_BASE = 0.5
# Also caps a 429's Retry-After: longer waits belong to the caller (a Celery retry), not
# to a worker asleep in an adapter's loop.
BACKOFF_CAP = 8.0


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if retry_after is not None:
        return min(retry_after, BACKOFF_CAP)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    # "Equal jitter": at least half the exponential step, so retries never bunch at zero.
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not cryptographic


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date), if any."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
