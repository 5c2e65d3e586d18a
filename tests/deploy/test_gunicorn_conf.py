"""deploy/gunicorn.conf.py: its uvicorn settings are uvicorn's own names and values, and
the server it configures holds ConversationRelay's WebSockets as docs/deploy.md says."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from types import ModuleType

import pytest
import requests
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.deploy.scripts import load_script
from tests.deploy.servers import Server, gunicorn_serving_websockets
from tests.processes import ROOT, child_env, free_port


@pytest.fixture
def conf(monkeypatch) -> ModuleType:
    # The file sets PROMETHEUS_MULTIPROC_DIR for its workers: set here first, so that
    # monkeypatch puts the test process's value back afterwards.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unused")
    return load_script("gunicorn_conf", "gunicorn.conf.py")


async def _app(scope, receive, send) -> None:  # pragma: no cover - never called
    raise AssertionError


def test_worker_settings_are_uvicorn_config_names_it_loads(conf) -> None:
    # given the worker's settings as uvicorn_worker hands them to uvicorn's Config
    config = Config(app=_app, log_config=None, **conf.CallcenterWorker.CONFIG_KWARGS)

    # when uvicorn loads them (an unknown name fails above, an unknown value here)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # uvicorn's legacy "websockets" warns: deprecated
        config.load()

    # then WebSockets are served by the websockets library's Sans-I/O implementation
    assert config.ws_protocol_class is WebSocketsSansIOProtocol
    assert config.ws_ping_interval and config.ws_ping_interval < 60  # under a proxy's idle
    assert config.ws_max_size == 64 * 1024
    assert config.ws_per_message_deflate is False


def test_uvicorn_gives_up_on_shutdown_before_gunicorn_kills_the_worker(conf) -> None:
    uvicorn_wait = conf.CallcenterWorker.CONFIG_KWARGS["timeout_graceful_shutdown"]

    assert 0 < uvicorn_wait < conf.graceful_timeout


def test_workers_are_not_recycled_by_request_count(conf) -> None:
    # a recycled worker shuts down, closing the live calls it holds
    assert conf.max_requests == 0


# --- The server it configures ----------------------------------------------------------------


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    with gunicorn_serving_websockets(tmp_path) as server:
        yield server


def _close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.slow
def test_server_echoes_a_frame_up_to_64_kib_and_refuses_a_larger_one(server) -> None:
    with connect(server.url, max_size=None) as ws:
        ws.send("x" * (64 * 1024))
        assert len(ws.recv(timeout=10)) == 64 * 1024

        ws.send("x" * (64 * 1024 + 1))

        assert _close_code(ws) == 1009  # message too big


@pytest.mark.slow
def test_server_declines_compression(server) -> None:
    # the client offers permessage-deflate, as websockets' client does by default
    with connect(server.url, compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("hola")
        assert ws.recv(timeout=10) == "hola"


@pytest.mark.slow
def test_stop_closes_live_sockets_with_1012_and_lets_their_cleanup_finish(server) -> None:
    # given a live socket
    with connect(server.url) as ws:
        ws.send("hola")
        assert ws.recv(timeout=10) == "hola"
        started = time.monotonic()

        # when the server is stopped (a reload or a new release)
        server.process.send_signal(signal.SIGTERM)

        # then the socket is closed at once, "service restart", not kept to its end
        assert _close_code(ws) == 1012
        assert time.monotonic() - started < 5

    # and the application, told of it, had the time to record it before the worker exited
    assert server.process.wait(timeout=40) == 0
    assert server.record.read_text() == "1012"


# --- The project's application under it -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_documented_check_reaches_the_relay_consumer(tmp_path) -> None:
    # given the project's application served as production serves it
    port = free_port()
    env = child_env(PORT=str(port), HOST="127.0.0.1", APP_URL=f"http://127.0.0.1:{port}")
    env.update(WEB_CONCURRENCY="1")
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        health = None
        deadline = time.monotonic() + 120
        while health is None and time.monotonic() < deadline and process.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
            except requests.RequestException:
                time.sleep(0.5)
        assert health is not None, log.read_text()[-3000:]
        assert health["components"]["relay"]["status"] == "up"

        # when the check docs/deploy.md gives is run against it
        check = subprocess.run(
            [sys.executable, "-m", "websockets", f"ws://127.0.0.1:{port}/relay/0/"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

        # then the handshake reached the relay's consumer, which refused it unsigned
        assert "server rejected WebSocket connection: HTTP 403" in check.stdout + check.stderr
        assert "Refused the relay socket" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
