"""`make run`'s processes on the embedded default, as the Makefile starts them: migrate,
the demo data, then web, worker and beat under honcho (Procfile), started twice on one data
folder, as a person runs `make run` again. (bench/starts.py runs it 20 times to the demo's
end; see README.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, free_port

BIN = Path(sys.executable).parent


def embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of `make run` with nothing configured: no servers, no vendors."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_", "REDIS_", "TWILIO_", "ELEVENLABS_", "OPENAI_"))
        and name not in ("DJANGO_SETTINGS_MODULE", "APP_ENV", "WEB_CONCURRENCY")
    }
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        APP_URL=f"http://localhost:{port}",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_once(data_dir: Path, log: Path) -> tuple[int, dict]:
    """One start: until /health reports a heartbeat newer than the start (beat's tick, through
    the broker, run by the worker), then Ctrl-C; honcho's exit code and that /health."""
    port = free_port()
    env = embedded_env(data_dir, port)
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)
    started = time.time()
    with log.open("w") as output:
        honcho = subprocess.Popen(
            [BIN / "honcho", "--no-colour", "start", "--procfile", "Procfile", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    health: dict = {}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and honcho.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
            except (requests.RequestException, json.JSONDecodeError):
                health = {}
            beat = health.get("heartbeat") or {}
            if beat and time.time() - beat["age_seconds"] > started:
                break
            time.sleep(1)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGINT)  # Ctrl-C
        try:
            honcho.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
    return honcho.returncode, health


@pytest.mark.slow
def test_procfile_starts_twice_on_the_embedded_default_and_stops_on_ctrl_c(tmp_path) -> None:
    for start in (1, 2):
        log = tmp_path / f"start-{start}.log"
        returncode, health = run_once(tmp_path / "var", log)
        text = log.read_text()

        assert health.get("status") == "up", text[-3000:]
        assert health["components"]["broker"]["status"] == "up"
        # honcho stopped by Ctrl-C (130), not by a process that stopped on its own
        assert returncode == 130, text[-3000:]
        assert "Traceback" not in text
