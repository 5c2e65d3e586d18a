"""The web service the benchmarks load: as production runs it (gunicorn with
deploy/gunicorn.conf.py and its uvicorn workers), or one uvicorn process where a figure is
of one process (its memory); and the CPU time its processes spent, read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from django.conf import settings
from django.test import override_settings

from tests.processes import child_env, free_port

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "bench"


@contextmanager
def web_server(
    *, log_name: str = "turns-server.log", app_url: str = "", **environment: str
) -> Iterator[tuple[str, int]]:
    """The web service as production runs it (gunicorn with deploy/gunicorn.conf.py: its
    uvicorn workers, 2 x cores + 1 unless WEB_CONCURRENCY says) on the bench database:
    its URL and the master's process id. ``app_url`` is the public URL (APP_URL) when a
    proxy is in front, the server's own by default. ``environment`` adds to (or
    overrides) its settings; its log is appended to var/bench/``log_name``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app_url = app_url or url
    env = child_env(
        **{
            "APP_URL": app_url,
            "TELEPHONY_BACKEND": "sandbox",
            "OPENAI_BASE_URL": settings.OPENAI_BASE_URL,
            "OPENAI_API_KEY": settings.OPENAI_API_KEY,
            "ELEVENLABS_BASE_URL": settings.ELEVENLABS_BASE_URL,
            "ELEVENLABS_API_KEY": settings.ELEVENLABS_API_KEY,
            "LOG_LEVEL": "WARNING",
            "CALLCENTER_LOCAL_FAKES": "1",  # the vendor keys above are for the local fakes
            **environment,
        }
    )
    env["HOST"], env["PORT"] = "127.0.0.1", str(port)
    command = [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"]
    # Its warnings and errors are kept where a failed request can be looked into.
    log = LOGS / log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(url, server, log)
        wait_until_idle(server.pid)
        with override_settings(APP_URL=app_url, TELEPHONY_BACKEND="sandbox"):
            yield url, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


@contextmanager
def single_process_server(log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """One uvicorn process serving the project on the bench database, with the API's rate
    limit out of the way: its URL and its process (whose memory is then the server's).
    Its output goes to ``log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(APP_URL=url, API_THROTTLE_RATE="1000000/second", LOG_LEVEL="WARNING")
    command = [
        *(sys.executable, "-m", "uvicorn", "callcenter.asgi:application"),
        *("--port", str(port), "--no-access-log", "--no-server-header"),
        *("--timeout-keep-alive", "65"),  # as production's gunicorn (keepalive = 65)
    ]
    output = log.open("w")
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/health", timeout=10)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the web server did not start") from None
                time.sleep(0.2)
        yield url, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        output.close()


def wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # workers importing the project on a busy machine
    while time.monotonic() < deadline:
        if server.poll() is not None:  # refused its settings, say: no use waiting
            raise RuntimeError(f"the web server stopped: {log.read_text()[-2000:]}")
        try:
            requests.get(f"{url}/health", timeout=2)
            return
        except requests.RequestException:  # not listening yet, or still starting up
            time.sleep(0.2)
    raise RuntimeError("the web server did not start")


def wait_until_idle(pid: int) -> None:
    """Wait for the workers still starting: one of them answering is not all of them
    being up, and the load must not meet a worker still importing the project."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.05:
            return
    raise RuntimeError("the web server's workers did not settle")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of process ``pid`` and its children (Linux):
    gunicorn's master and its workers."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in processes(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def processes(pid: int) -> list[list[str]]:
    """The /proc/<pid>/stat fields (after the name) of process ``pid`` and its children."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            found.append(fields)
    return found
