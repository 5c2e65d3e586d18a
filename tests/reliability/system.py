"""The product's own processes for the fault suite: a web server, several Celery workers
and beats on the test database and a Redis of the test's own; each one can be killed
(SIGKILL) and started again while the others run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

import requests

from callcenter.celery import app
from tests.processes import ROOT, child_env, free_port
from tests.reliability.servers import wait_for


class ProductSystem:
    """Web (uvicorn), ``workers`` Celery workers (threads) and ``beats`` beats, with
    ``env`` in their environment (REDIS_URL names the broker); logs in ``folder``, and
    their last lines printed when the system stops (pytest shows them on failure)."""

    def __init__(
        self,
        folder: Path,
        *,
        env: dict[str, str],
        workers: int = 1,
        beats: int = 0,
        threads: int = 4,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = child_env(APP_URL=self.url, DATA_DIR=str(folder), **env)
        self.broker_url = self.env["REDIS_URL"]
        self.threads = threads
        self._initial = (workers, beats)
        self._processes: dict[str, subprocess.Popen] = {}
        self._commands: dict[str, list[str]] = {}
        self._logs: dict[str, Path] = {}

    # --- Processes ------------------------------------------------------------------------
    def start(self) -> Self:
        workers, beats = self._initial
        self._spawn(
            "web",
            ["-m", "uvicorn", "callcenter.asgi:application", "--port", str(self.port)],
        )
        for _index in range(workers):
            self.start_worker()
        for index in range(beats):
            self._spawn(f"beat-{index}", ["-m", "celery", "--app", "callcenter", "beat"])
        wait_for(
            self._web_answers, timeout=60, interval=0.2, message="the web server did not start"
        )
        return self

    def start_worker(self) -> str:
        """Start one more worker; its name."""
        name = f"worker-{sum(name.startswith('worker') for name in self._logs)}"
        self._spawn(
            name,
            [
                *("-m", "celery", "--app", "callcenter", "worker", "--loglevel", "INFO"),
                *("--pool", "threads", "--concurrency", str(self.threads)),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("--hostname", f"{name}-{self.port}@%h"),
            ],
        )
        return name

    def kill(self, name: str) -> None:
        """SIGKILL the process ``name``: no cleanup, no goodbye, as the kernel's OOM killer."""
        process = self._processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def revive(self) -> list[str]:
        """Start again each process that exited, as a supervisor does (Compose's
        ``restart: always``); their names."""
        revived = [name for name, process in self._processes.items() if process.poll() is not None]
        for name in revived:
            print(f"{name} exited ({self._processes[name].returncode}); started again")
            self._spawn(name, self._commands[name])
        return revived

    @property
    def workers(self) -> list[str]:
        return [name for name in self._processes if name.startswith("worker")]

    def stop(self) -> None:
        for process in self._processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        for name, path in self._logs.items():
            print(f"--- {name} (last lines) ---")
            print("\n".join(path.read_text(errors="replace").splitlines()[-30:]))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, name: str, arguments: list[str]) -> None:
        path = self.folder / f"{name}.log"
        self._logs[name] = path
        self._commands[name] = arguments
        self._processes[name] = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=ROOT,
            env=self.env,
            stdout=path.open("a"),
            stderr=subprocess.STDOUT,
        )

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=10).status_code in (200, 503)
        except requests.RequestException:
            return False

    # --- Tasks ----------------------------------------------------------------------------
    def send_task(self, name: str, *args: object) -> None:
        """Queue task ``name`` for these workers (the test's own broker is another)."""
        with app.connection_for_write(self.broker_url) as connection:
            app.send_task(name, args=args, connection=connection)
