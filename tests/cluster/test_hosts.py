"""Nothing assumes one host once REDIS_URL is set (docs/architecture.md, "Running on many
hosts"): what processes must agree on lives in Redis or PostgreSQL, never in a folder of
one machine, and Prometheus can read each web instance on its own."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django_redis import get_redis_connection

from calls import pacing
from tests.callcenter.test_settings import PRODUCTION, load_settings
from tests.security.test_metrics import TOKEN
from voices import concurrency

needs_redis = pytest.mark.skipif(
    not django_settings.REDIS_URL, reason="needs Redis (.ci/run starts it)"
)


def no_file_locks(*_args: object) -> None:
    raise AssertionError("a file lock was taken although REDIS_URL is set")


@needs_redis
def test_pacing_bucket_is_shared_by_hosts_with_their_own_disks(
    settings, tmp_path, monkeypatch
) -> None:
    # given a bucket of 3 tokens, and the file lock of the embedded default made to fail
    monkeypatch.setattr(pacing.fcntl, "flock", no_file_locks)
    bucket = f"hosts-{time.monotonic_ns()}"

    # when host A (its own DATA_DIR) takes all of them, then host B (another DATA_DIR) asks
    settings.DATA_DIR = tmp_path / "host-a"
    first = pacing.take_tokens(bucket=bucket, rate=0.001, capacity=3, wanted=3)
    settings.DATA_DIR = tmp_path / "host-b"
    second = pacing.take_tokens(bucket=bucket, rate=0.001, capacity=3, wanted=3)

    # then B gets none: the bucket is in Redis, and neither host wrote to its disk
    assert (first, second) == (3, 0)
    assert get_redis_connection("default").exists(f"callcenter:pacing:{bucket}")
    assert not (tmp_path / "host-a").exists() and not (tmp_path / "host-b").exists()


@needs_redis
def test_elevenlabs_slots_are_shared_by_hosts_with_their_own_disks(
    settings, tmp_path, monkeypatch
) -> None:
    # given one slot for the deployment, and the file lock of the embedded default made to fail
    monkeypatch.setattr(concurrency.fcntl, "flock", no_file_locks)
    settings.ELEVENLABS_CONCURRENCY = 1
    get_redis_connection("default").delete(concurrency.REDIS_KEY)

    # when host A takes it, then host B (another DATA_DIR) waits for one
    settings.DATA_DIR = tmp_path / "host-a"
    held = concurrency.acquire(until=time.monotonic() + 1)
    settings.DATA_DIR = tmp_path / "host-b"
    refused = concurrency.acquire(until=time.monotonic() + 0.2)

    # then B gets none until A gives it back, and no host wrote to its disk
    assert held is not None and refused is None
    held.release()
    again = concurrency.acquire(until=time.monotonic() + 1)
    assert again is not None
    again.release()
    assert not (tmp_path / "host-a").exists() and not (tmp_path / "host-b").exists()


@pytest.fixture
def production_web(settings, monkeypatch, tmp_path) -> Client:
    """A client of a web instance with production's HTTPS settings and a metrics token."""
    production = load_settings(monkeypatch, tmp_path, **PRODUCTION)
    for name in ("SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT", "SECURE_PROXY_SSL_HEADER"):
        setattr(settings, name, production[name])
    settings.METRICS_OPEN = False
    settings.METRICS_TOKEN = TOKEN
    return Client()


@pytest.mark.django_db
def test_prometheus_reads_each_web_instance_over_plain_http(production_web) -> None:
    # when Prometheus scrapes an instance's own address (a pod's IP), not APP_URL, which
    # the load balancer sends to any instance
    scraped = production_web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    # then that instance answers with its counters, not a redirect to APP_URL
    assert scraped.status_code == 200
    assert b"django_http_requests" in scraped.content


@pytest.mark.django_db
def test_plain_http_metrics_still_want_the_token_and_the_rest_is_redirected(
    production_web,
) -> None:
    assert production_web.get("/metrics").status_code == 404
    assert production_web.get("/admin/").status_code == 301
