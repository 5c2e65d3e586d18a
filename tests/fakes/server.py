"""What every fake vendor API here shares: an HTTP server on 127.0.0.1 in a daemon thread.

A `LocalFakeServer` subclass says how to read a request and how to answer it; this module
starts and stops the server, records every request, and plays scripted faults (error
statuses, slow answers, dropped connections) before answering normally again.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import SplitResult, urlsplit

# An answer: status, headers and body bytes.
Response = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class RecordedRequest:
    """What every fake records of a request; subclasses add the body as the vendor reads it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case


RequestT = TypeVar("RequestT", bound=RecordedRequest)


@dataclass(frozen=True)
class Scripted:
    """How to answer one of the next requests, queued by `_queue`."""

    status: int | None  # None: answer normally after the delay
    delay: float = 0.0
    body: Any = None  # a str is sent as HTML (say, a proxy's error page), anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: LocalFakeServer[Any]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has closed its socket before the late answer; that is
        # the point of a scripted delay, not an error worth a traceback.
        pass


class FakeRequestHandler(BaseHTTPRequestHandler):
    """Serves GET and POST through the fake; a subclass adds `do_DELETE` and the like."""

    server: _Server
    # Connections are kept open between requests, as the vendors' own servers keep them:
    # a client that opened a new one for every request would go unnoticed otherwise, and
    # the benchmarks would time connection set-up that production does not pay.
    protocol_version = "HTTP/1.1"
    # As the vendors' own servers answer: without Nagle's algorithm. With it, a body (or
    # a streamed chunk) written after the headers waits for the client's delayed ACK of
    # them, up to 40 ms on Linux, now and then: a delay of the fake's, not the client's.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        request = fake._parse_request(
            self.command,
            urlsplit(self.path),
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        scripted, problems = fake._record(request)
        if scripted is not None and scripted.drop:
            self.close_connection = True
            return
        fake._hold(scripted)
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if scripted is not None and scripted.status is not None:
            self._send(_scripted_answer(scripted))
        else:
            self._send(fake._answer(request, problems))

    def _send(self, response: Response) -> None:
        """Write ``response``; a fake that answers other kinds of answers extends this."""
        status, headers, content = response
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class LocalFakeServer(Generic[RequestT]):
    """A fake API server; use as a context manager or with start() and stop().

    Subclasses implement `_parse_request` and `_answer`, and may check requests
    (`_check_request`) or hold answers longer (`_hold`).
    """

    thread_name = "fake-server"
    handler_class: type[FakeRequestHandler] = FakeRequestHandler  # a subclass answers more
    # Set before start() to serve HTTPS with this context's certificate.
    tls: ssl.SSLContext | None = None

    def __init__(self) -> None:
        # Backoff waits of the code under test, recorded by the fixture that serves the fake.
        self.sleeps: list[float] = []
        self._requests: list[RequestT] = []
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- Lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        self._httpd = _Server(("127.0.0.1", 0), self.handler_class)
        self._httpd.fake = self
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # --- Scripting ------------------------------------------------------------------------
    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` requests for `seconds`, then answer (and act) normally."""
        self._queue(times, delay=seconds)

    def _queue(
        self,
        times: int,
        *,
        status: int | None = None,
        delay: float = 0.0,
        body: Any = None,
        headers: dict[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        """Script the next `times` answers: `status` with `body`, a delay, or a drop."""
        with self._lock:
            self._script.extend(
                Scripted(
                    status=status, delay=delay, body=body, headers=dict(headers or {}), drop=drop
                )
                for _ in range(times)
            )

    # --- Inspection -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestT]:
        with self._lock:
            return list(self._requests)

    # --- Vendor hooks (called from handler threads) ---------------------------------------
    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RequestT:
        """The request as the vendor's API reads it (`headers` with lower-case names)."""
        raise NotImplementedError

    def _check_request(self, request: RequestT) -> list[str]:
        """What is wrong with the request before it is answered, if a subclass checks."""
        return []

    def _hold(self, scripted: Scripted | None) -> None:
        """Wait before answering: as long as the script says."""
        if scripted is not None:
            self._wait(scripted.delay)

    def _answer(self, request: RequestT, problems: list[str]) -> Response:
        """The vendor's answer to an unscripted request; `problems` from `_check_request`."""
        raise NotImplementedError

    # --- Serving (called from handler threads) --------------------------------------------
    def _record(self, request: RequestT) -> tuple[Scripted | None, list[str]]:
        """Check and log the request; its scripted answer, if any, and its problems."""
        problems = self._check_request(request)
        with self._lock:
            self._requests.append(request)
            return (self._script.popleft() if self._script else None), problems

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def json_response(status: int, body: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _scripted_answer(scripted: Scripted) -> Response:
    assert scripted.status is not None
    if isinstance(scripted.body, str):  # say, a proxy's HTML error page
        status, headers = scripted.status, {"Content-Type": "text/html"}
        content = scripted.body.encode()
    else:
        status, headers, content = json_response(scripted.status, scripted.body)
    headers.update(scripted.headers)
    return status, headers, content
