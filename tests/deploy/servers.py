"""gunicorn as deploy/gunicorn.conf.py configures it, serving tests/deploy/websocket_app.py,
for the tests of the server's and a proxy's WebSocket handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from websockets.exceptions import InvalidHandshake
from websockets.sync.client import connect

from tests.processes import ROOT, free_port


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    port: int
    record: Path  # where the app writes the close code of a socket it was told closed

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/relay/1/"


@contextmanager
def gunicorn_serving_websockets(folder: Path) -> Iterator[Server]:
    """One worker, on a free port; its log in ``folder``. Stopped (SIGTERM) at the end,
    unless the test stopped it."""
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEBSOCKET_APP_RECORD=str(folder / "closed"),
    )
    log = folder / "gunicorn.log"
    command = [
        *(sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"),
        "tests.deploy.websocket_app:application",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(process, port, folder / "closed")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with connect(server.url, open_timeout=2):
                    break
            except (OSError, InvalidHandshake, TimeoutError):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
