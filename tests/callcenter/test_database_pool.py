"""The web server shares a pool of PostgreSQL connections among its request threads.

Under ASGI every request runs in a thread of its own; with a persistent connection per
thread, 50 concurrent requests opened 50 connections and PostgreSQL soon answered
"remaining connection slots are reserved" (HTTP 500). These tests start the real web
server (uvicorn, as in production) and count its sessions in pg_stat_activity.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from tests.processes import ROOT, child_env, free_port, wait_until_up

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="pools are for PostgreSQL (SQLite: one file)"
    ),
]

POOL_SIZE = 3
CONCURRENCY = 40
REQUESTS = 400


def _sessions(application: str) -> int:
    """Sessions open on the test database by ``application``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [application],
        )
        return cursor.fetchone()[0]


@pytest.mark.slow
def test_web_server_under_concurrent_requests_stays_within_its_pool(tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    application = f"pool-test-{port}"  # libpq names the server's sessions with PGAPPNAME
    log = (tmp_path / "web.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "callcenter.asgi:application", "--port", str(port)],
        cwd=ROOT,
        env=child_env(APP_URL=url, DATABASE_POOL_SIZE=str(POOL_SIZE), PGAPPNAME=application),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        try:
            while not done.is_set():
                peak = max(peak, _sessions(application))
                time.sleep(0.005)
        finally:
            connection.close()  # the watcher thread's own

    try:
        wait_until_up(url)
        watcher = threading.Thread(target=watch)
        watcher.start()
        with requests.Session() as http, ThreadPoolExecutor(CONCURRENCY) as clients:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY)
            http.mount("http://", adapter)
            statuses = list(
                clients.map(
                    lambda _: http.get(f"{url}/health", timeout=30).status_code, range(REQUESTS)
                )
            )
        done.set()
        watcher.join()
    finally:
        done.set()
        server.terminate()
        server.wait(timeout=20)
        log.close()

    assert statuses == [200] * REQUESTS, (tmp_path / "web.log").read_text()[-3000:]
    # Every request touched the database, CONCURRENCY at a time, through POOL_SIZE sessions.
    assert 1 <= peak <= POOL_SIZE


def test_pool_is_the_web_process_only(monkeypatch, tmp_path) -> None:
    """Worker and beat (settings read without callcenter/asgi.py) keep plain connections."""
    from tests.callcenter.test_settings import load_settings

    url = "postgresql://callcenter:secret@db:5432/callcenter"
    plain = load_settings(monkeypatch, tmp_path, DATABASE_URL=url)["DATABASES"]["default"]
    pooled = load_settings(
        monkeypatch,
        tmp_path,
        DATABASE_URL=url,
        DATABASE_POOL="true",
        DATABASE_POOL_SIZE="7",
        DATABASE_POOL_TIMEOUT="2.5",
    )["DATABASES"]["default"]

    # Never persistent connections: one per request thread would pile up under ASGI (and
    # Django refuses them with a pool).
    assert plain["CONN_MAX_AGE"] == pooled["CONN_MAX_AGE"] == 0
    assert "pool" not in plain["OPTIONS"]
    assert pooled["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 7, "timeout": 2.5}
