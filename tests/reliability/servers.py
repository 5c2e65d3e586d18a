"""Servers the fault suite breaks on purpose: a Redis of its own, which it stops and starts,
and a TCP proxy that it cuts, standing between the product and a server (PostgreSQL,
Twilio) that other tests share."""

from __future__ import annotations

import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.processes import free_port


def wait_for(condition, *, timeout: float, interval: float = 0.1, message: str = "") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message or f"not true after {timeout} s: {condition}")
        time.sleep(interval)


class RedisServer:
    """A redis-server on a loopback port of its own, with no persistence: stopped, it
    forgets everything, as a restarted cache without a volume does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (.ci/run installs it)"
        self._process = subprocess.Popen(
            [
                executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=(self.folder / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, timeout=10, message="redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()  # as a crash: nothing is saved
            self._process.wait()
            self._process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class TcpProxy:
    """Forwards a loopback port to ``target``, until told otherwise.

    ``cut()``: open connections are reset and new ones refused, as when the server's
    host drops off the network. ``stall()``: what clients send is held back, unsent (they
    wait for an answer to a request the server never saw). ``lose_answers()``: requests
    reach the server, but its answers are lost on the way back (a client waits for an
    answer the server did send). ``restore()`` ends each of these; held requests of
    clients still there are sent on then.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._losing = threading.Event()
        self._stalling = threading.Event()
        self._stopping = threading.Event()

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
            for sock in self._connections:
                _reset(sock)
            self._connections.clear()

    def restore(self) -> None:
        self._cut.clear()
        self._losing.clear()
        self._stalling.clear()

    def stall(self) -> None:
        self._stalling.set()

    @property
    def connections(self) -> int:
        """Client connections open through the proxy."""
        with self._lock:
            return len(self._connections) // 2

    def lose_answers(self) -> None:
        self._losing.set()

    def start(self) -> Self:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._connections.update({client, server})
            threading.Thread(
                target=self._relay, args=(client, server), name="tcp-proxy-relay", daemon=True
            ).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        stalled: list[bytes] = []  # what the client sent while the proxy stalled
        try:
            while not self._cut.is_set():
                if stalled and not self._stalling.is_set():
                    server.sendall(b"".join(stalled))
                    stalled.clear()
                readable, _writable, _errors = select.select([client, server], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return  # a client that went away takes what it sent with it
                    if sock is server:
                        if not self._losing.is_set():
                            client.sendall(data)
                    elif self._stalling.is_set():
                        stalled.append(data)
                    else:
                        server.sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(client)
                self._connections.discard(server)
            _reset(client)
            _reset(server)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset, as a dropped network leaves it to its peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
