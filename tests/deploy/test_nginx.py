"""deploy/nginx/callcenter.conf in front of gunicorn (deploy/gunicorn.conf.py): nginx
passes ConversationRelay's WebSocket on /relay/ with the headers Django believes, and holds
it as long as the longest call. Its TLS lines aside: the test speaks plain HTTP to it.
Skipped without nginx (Debian: apt-get install nginx)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from tests.deploy.servers import Server, gunicorn_serving_websockets
from tests.processes import ROOT, free_port

CONF = ROOT / "deploy" / "nginx" / "callcenter.conf"
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if Path(path).exists()), None
)
# A campaign's time_limit_seconds at most (campaigns/models/campaigns.py): Twilio's own.
LONGEST_CALL_SECONDS = 4 * 60 * 60
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _relay_location(text: str) -> str:
    match = re.search(r"location /relay/ \{(.*?)\n    \}", text, re.S)
    assert match, "no `location /relay/` block"
    return match.group(1)


def _seconds(value: str) -> float:
    """An nginx time ("245m", "4h 5m", "30"): seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)?", value)
    return sum(int(number) * UNITS[unit or "s"] for number, unit in parts)


def test_relay_location_upgrades_and_outlasts_the_longest_call() -> None:
    relay = _relay_location(CONF.read_text())
    directives = dict(re.findall(r"^\s*(\w+) (.+?);", relay, re.M))
    headers = dict(re.findall(r"proxy_set_header (\S+) (.+?);", relay))

    assert directives["proxy_http_version"] == "1.1"
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"].strip('"') == "upgrade"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        assert _seconds(directives[timeout]) > LONGEST_CALL_SECONDS, timeout
    assert directives["proxy_buffering"] == "off"


def test_seconds_reads_nginx_times() -> None:
    assert _seconds("245m") == 14700
    assert _seconds("4h 5m") == 14700
    assert _seconds("60") == 60


# --- nginx running the file --------------------------------------------------------------


@pytest.fixture
def upstream(tmp_path) -> Iterator[Server]:
    with gunicorn_serving_websockets(tmp_path) as server:
        yield server


@pytest.fixture
def nginx(tmp_path, upstream) -> Iterator[int]:
    """nginx running deploy/nginx/callcenter.conf, its HTTPS server on a free port in plain
    HTTP, in front of ``upstream``; yields that port."""
    if NGINX is None:
        pytest.skip("nginx is not installed")
    port = free_port()
    site = CONF.read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream.port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    site = re.sub(r"^\s*ssl_certificate(_key)? .*;\n", "", site, flags=re.M)
    (tmp_path / "site.conf").write_text(site)
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log info;\nevents {{}}\nhttp {{\n  access_log off;\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items()).replace(
            "body_temp", "client_body_temp"
        )
        + f"  include {tmp_path}/site.conf;\n}}\n"
    )
    command = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with connect(f"ws://127.0.0.1:{port}/relay/1/", open_timeout=2):
                    break
            except (OSError, InvalidHandshake, TimeoutError):
                assert process.poll() is None, (tmp_path / "error.log").read_text()[-2000:]
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_nginx_passes_the_relay_socket_with_the_forwarding_headers(nginx) -> None:
    # given a client that claims HTTPS itself, over plain HTTP
    with connect(
        f"ws://127.0.0.1:{nginx}/relay/7/", additional_headers={"X-Forwarded-Proto": "https"}
    ) as ws:
        ws.send("hola")
        assert ws.recv(timeout=10) == "hola"

        ws.send("headers")
        headers = json.loads(ws.recv(timeout=10))

    # then the app was told the scheme the client used, not the one it claimed, the host as
    # the client sent it, and the client's address
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{nginx}"
    assert headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.slow
def test_nginx_does_not_upgrade_outside_the_relay_location(nginx) -> None:
    # `location /` lacks the upgrade: the app gets a plain GET (its 404), as every path
    # would without the relay's location
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"ws://127.0.0.1:{nginx}/other/", open_timeout=5):
            pass

    assert refused.value.response.status_code == 404
