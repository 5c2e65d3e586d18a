"""Calls-per-second buckets: atomic across threads and processes, on Redis and on files."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from calls.pacing import take_tokens


@pytest.fixture(params=["redis", "file"])
def backend(request, settings) -> str:
    if request.param == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis bucket runs in CI (.ci/run)")
    if request.param == "file":
        settings.REDIS_URL = ""
    return request.param


def test_take_tokens_grants_at_most_capacity_then_nothing(backend) -> None:
    bucket = f"test-{uuid.uuid4().hex}"

    first = take_tokens(bucket=bucket, rate=0.001, capacity=5, wanted=8)
    second = take_tokens(bucket=bucket, rate=0.001, capacity=5, wanted=8)

    assert (first, second) == (5, 0)


def test_take_tokens_refills_at_the_rate(backend) -> None:
    bucket = f"test-{uuid.uuid4().hex}"
    take_tokens(bucket=bucket, rate=20, capacity=20, wanted=20)

    time.sleep(0.25)
    granted = take_tokens(bucket=bucket, rate=20, capacity=20, wanted=20)

    # 0.25 s at 20/s is 5 tokens; the bounds allow for the test machine's scheduling
    assert 4 <= granted <= 8


def test_take_tokens_nothing_wanted_or_no_rate_grants_nothing(backend) -> None:
    assert take_tokens(bucket="x", rate=1, capacity=1, wanted=0) == 0
    assert take_tokens(bucket="x", rate=0, capacity=1, wanted=3) == 0


def test_take_tokens_concurrent_takers_never_share_a_token(backend) -> None:
    # given eight threads racing for a bucket of 50 that barely refills
    bucket = f"test-{uuid.uuid4().hex}"
    barrier = threading.Barrier(8)
    granted: list[int] = []

    def taker() -> None:
        barrier.wait()
        for _ in range(20):
            granted.append(take_tokens(bucket=bucket, rate=0.001, capacity=50, wanted=1))

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then exactly the 50 tokens were handed out, never more
    assert sum(granted) == 50
