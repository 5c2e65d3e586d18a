"""Every documented way to serve the ASGI application starts and answers /health
(README.md, docs/deploy.md): each a real server process on the test database."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.processes import ROOT, child_env, free_port

SERVERS = {
    # The Procfile's (make run).
    "uvicorn": ["-m", "uvicorn", "callcenter.asgi:application"],
    # Many run Django on ASGI so: the application is imported in each worker's event loop.
    "uvicorn --workers 2": ["-m", "uvicorn", "--workers", "2", "callcenter.asgi:application"],
    "uvicorn --reload": ["-m", "uvicorn", "--reload", "callcenter.asgi:application"],
    # Production's (deploy/Dockerfile): WEB_CONCURRENCY=2 below.
    "gunicorn": ["-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"],
}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", SERVERS)
def test_asgi_application_starts_under(server, tmp_path) -> None:
    port = free_port()
    command = [sys.executable, *SERVERS[server]]
    if server.startswith("uvicorn"):
        command += ["--port", str(port)]
    env = child_env(PORT=str(port), HOST="127.0.0.1", APP_URL=f"http://127.0.0.1:{port}")
    # gunicorn's workers; uvicorn reads it too (as --workers), so only for gunicorn.
    env.pop("WEB_CONCURRENCY", None)
    if server == "gunicorn":
        env["WEB_CONCURRENCY"] = "2"
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        # when /health is asked for until it answers (gunicorn's master listens at once,
        # its workers answer once each has imported Django)
        status = None
        deadline = time.monotonic() + 120
        while status is None and time.monotonic() < deadline and process.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code
            except requests.RequestException:
                time.sleep(0.5)
        # then it does, and the server is still up
        assert status == 200, log.read_text()[-3000:]
        assert process.poll() is None
        assert "SynchronousOnlyOperation" not in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
