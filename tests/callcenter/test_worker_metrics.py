"""A worker serves what its tasks count, summed over its pool's processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from calls.tasks import place_call_task
from tests.processes import child_env, free_port

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "worker-metrics-test"
EXPECTED = 'callcenter_calls_placed_total{result="not_pending"} 4.0'


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_serves_its_tasks_metrics(tmp_path) -> None:
    port = free_port()
    env = child_env(
        WORKER_METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics")
    )
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_stale.db").write_bytes(b"left by a previous run")
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "--app", "callcenter", "worker"),
            *("--pool", "prefork", "--concurrency", "2", "--queues", QUEUE),
            *("--without-gossip", "--without-mingle", "--hostname", f"metrics-{port}@%h"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        # A call id that does not exist: the task finds nothing pending, and counts it.
        for n in range(4):
            place_call_task.apply_async((10**9 + n,), queue=QUEUE)
        body, deadline = "", time.monotonic() + 60
        while EXPECTED not in body and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                continue  # not serving yet
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    assert EXPECTED in body
    assert not (tmp_path / "metrics" / "counter_stale.db").exists()
