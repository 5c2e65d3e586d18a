"""One web instance's /metrics counts what all its gunicorn workers served, whichever worker
answers the scrape (prometheus_client's multiprocess mode, deploy/gunicorn.conf.py): with
instances on many hosts, Prometheus scrapes each instance and adds them up."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.processes import ROOT, child_env, free_port
from tests.security.test_metrics import TOKEN

REQUESTS = 60
# django-prometheus's count of responses by status, summed over the workers' files.
NOT_FOUND = re.compile(r'^django_http_responses_total_by_status_total\{status="404"\} (\S+)$', re.M)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_metrics_of_an_instance_add_up_its_workers(tmp_path) -> None:
    # given gunicorn as production runs it, with two workers
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        DATA_DIR=str(tmp_path),
        METRICS_TOKEN=TOKEN,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "gunicorn.log"
    command = [
        *(sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"),
        "callcenter.asgi:application",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while not _answers(url):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        # when requests arrive at once (so both workers take some), then Prometheus scrapes
        # a few times, each scrape answered by either worker
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda n: requests.get(f"{url}/no-such-page-{n}", timeout=30).status_code,
                    range(REQUESTS),
                )
            )
        scrapes = [_not_found(url) for _ in range(6)]

        # then every scrape counts every request, not one worker's share
        assert statuses == [404] * REQUESTS
        assert scrapes == [REQUESTS] * 6, scrapes
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=10).status_code in (200, 503)
    except requests.RequestException:
        return False


def _not_found(url: str) -> float:
    scraped = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert scraped.status_code == 200
    found = NOT_FOUND.search(scraped.text)
    return float(found.group(1)) if found else 0.0
