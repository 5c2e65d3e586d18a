"""What tests (and benchmarks) that start the project's own processes share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process (web server, Celery worker or beat) that must run on
    the test settings and the test database, plus ``extra``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CALLCENTER_TEST_DATABASE_NAME": str(connections["default"].settings_dict["NAME"]),
        **extra,
    }


def end_other_sessions() -> None:
    """End every other session of ours on the test database (PostgreSQL): threads of async
    code keep connections of their own, and a database with sessions cannot be dropped.

    Only client sessions of this role: an autovacuum worker busy on the database (after a
    bench's 100,000 inserted rows, say) runs as a superuser, and asking to end it failed
    ("must be a superuser to terminate superuser process"); it ends on its own."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND usename = current_user"
        )


def other_redis_database(url: str) -> str:
    """REDIS_URL two databases on: a broker and cache of a test's own, so that no other
    worker of the test session takes its tasks."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) + 2
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def running_system(folder: Path, **extra: str) -> Iterator[str]:
    """The real web server (uvicorn), a Celery worker and beat on the test database,
    with ``extra`` in their environment; yields the web server's URL. Their logs are in
    ``folder`` and their last lines are printed at the end (pytest shows them on failure).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(APP_URL=url, DATA_DIR=str(folder), **extra)
    commands = {
        "web": [
            *(sys.executable, "-m", "uvicorn", "callcenter.asgi:application"),
            *("--port", str(port)),
        ],
        "worker": [
            *(sys.executable, "-m", "celery", "--app", "callcenter", "worker"),
            *("--pool", "threads", "--concurrency", "16", "--loglevel", "INFO"),
            *("--without-gossip", "--without-mingle", "--hostname", f"system-{port}@%h"),
        ],
        "beat": [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "callcenter",
            "beat",
            "--loglevel",
            "INFO",
        ],
    }
    logs = {name: (folder / f"{name}.log").open("w") for name in commands}
    processes = {
        name: subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=logs[name], stderr=subprocess.STDOUT
        )
        for name, command in commands.items()
    }
    try:
        wait_until_up(url)
        yield url
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name, log in logs.items():
            log.close()
            print(f"--- {name} (last lines) ---")
            print("\n".join((folder / f"{name}.log").read_text().splitlines()[-40:]))


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            # The first request warms the server up (connections, imports): give it time.
            if requests.get(f"{url}/health", timeout=10).status_code in (200, 503):
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("the web server did not start")
