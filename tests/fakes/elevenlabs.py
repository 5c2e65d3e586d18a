"""A fake ElevenLabs API on 127.0.0.1, for driving the real SDK over HTTP in tests.

It serves the endpoints `voices/speech.py` calls (the voices listing, v1 and v2, and
text-to-speech), checks the API key like ElevenLabs does, records every request, and
plays scripted faults (error statuses, slow responses) before answering normally again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

BELLA_ID = "EXAVITQu4vr4xnSDxMaL"
ANTONI_ID = "ErXwobaYiN019PkySvjV"


def default_voices() -> list[dict[str, Any]]:
    """Two premade voices shaped like ElevenLabs' voice listing."""
    return [
        {
            "voice_id": BELLA_ID,
            "name": "Bella",
            "category": "premade",
            "labels": {"accent": "castilian", "gender": "female"},
            "description": "Warm and clear.",
            "preview_url": f"https://storage.googleapis.com/eleven-public-prod/premade/voices/{BELLA_ID}/preview.mp3",
            "settings": {
                "stability": 0.5,
                "similarity_boost": 0.75,
                "style": 0.0,
                "use_speaker_boost": True,
                "speed": 1.0,
            },
            "verified_languages": [
                {
                    "language": "es",
                    "model_id": "eleven_multilingual_v2",
                    "accent": "castilian",
                    "locale": "es-ES",
                }
            ],
        },
        {
            "voice_id": ANTONI_ID,
            "name": "Antoni",
            "category": "premade",
            "labels": {"accent": "american", "gender": "male", "language": "en"},
            "preview_url": f"https://storage.googleapis.com/eleven-public-prod/premade/voices/{ANTONI_ID}/preview.mp3",
            "settings": None,
        },
    ]


def fake_audio(*, text: str, voice_id: str) -> bytes:
    """The bytes the fake renders for `text` in a voice: an ID3 tag and a digest."""
    return b"ID3" + hashlib.sha256(f"{voice_id}\n{text}".encode()).digest()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    json: Any


@dataclass(frozen=True)
class _Scripted:
    status: int | None  # None: answer normally after the delay
    delay: float = 0.0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeElevenLabs:
    """A fake ElevenLabs server; use as a context manager or with start() and stop()."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        voices: list[dict[str, Any]] | None = None,
        max_characters: int = 5000,
        delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.voices = default_voices() if voices is None else voices
        self.max_characters = max_characters
        self.delay = delay  # seconds before every answer
        self.characters = 0
        # Backoff waits of the code under test, recorded by the `fake_elevenlabs` fixture.
        self.sleeps: list[float] = []
        self._requests: list[RecordedRequest] = []
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- Lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeElevenLabs:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-elevenlabs",
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

    def __enter__(self) -> FakeElevenLabs:
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
        return f"http://{host}:{port}"

    # --- Scripting ------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (and an ElevenLabs-shaped body)."""
        if body is None:
            body = _error_body(f"scripted_{status}", f"Scripted failure with status {status}.")
        with self._lock:
            self._script.extend(
                _Scripted(status=status, body=body, headers=dict(headers or {}))
                for _ in range(times)
            )

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` requests for `seconds` before answering them normally."""
        with self._lock:
            self._script.extend(_Scripted(status=None, delay=seconds) for _ in range(times))

    def add_voice(self, voice: dict[str, Any]) -> None:
        with self._lock:
            self.voices.append(voice)

    def update_voice(self, voice_id: str, **changes: Any) -> None:
        with self._lock:
            next(v for v in self.voices if v["voice_id"] == voice_id).update(changes)

    def remove_voice(self, voice_id: str) -> None:
        with self._lock:
            self.voices = [v for v in self.voices if v["voice_id"] != voice_id]

    # --- Inspection -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    # --- Serving (called from handler threads) --------------------------------------------
    def _record(self, request: RecordedRequest) -> _Scripted | None:
        with self._lock:
            self._requests.append(request)
            return self._script.popleft() if self._script else None

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("xi-api-key") != self.api_key:
            return _json(401, _error_body("invalid_api_key", "Invalid API key"))
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == ["v1", "voices"]:
            return _json(200, {"voices": self._voice_list()})
        if request.method == "GET" and parts == ["v2", "voices"]:
            return self._search_voices(request)
        if request.method == "GET" and parts[:2] == ["v1", "voices"] and len(parts) == 3:
            voice = self._voice(parts[2])
            if voice is None:
                return _voice_not_found(parts[2])
            return _json(200, voice)
        if (
            request.method == "POST"
            and parts[:2] == ["v1", "text-to-speech"]
            and len(parts) in (3, 4)
            and (len(parts) == 3 or parts[3] == "stream")
        ):
            return self._text_to_speech(request, voice_id=parts[2])
        return _json(404, {"detail": "Not Found"})

    def _voice_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.voices)

    def _voice(self, voice_id: str) -> dict[str, Any] | None:
        return next((v for v in self._voice_list() if v["voice_id"] == voice_id), None)

    def _search_voices(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        voices = self._voice_list()
        page_size = int(request.query.get("page_size", ["10"])[0])
        if not 1 <= page_size <= 100:
            return _json(422, {"detail": [{"loc": ["query", "page_size"], "msg": "invalid"}]})
        start = int(request.query.get("next_page_token", ["0"])[0])
        page = voices[start : start + page_size]
        has_more = start + page_size < len(voices)
        return _json(
            200,
            {
                "voices": page,
                "has_more": has_more,
                "total_count": len(voices),
                "next_page_token": str(start + page_size) if has_more else None,
            },
        )

    def _text_to_speech(
        self, request: RecordedRequest, *, voice_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        if self._voice(voice_id) is None:
            return _voice_not_found(voice_id)
        body = request.json if isinstance(request.json, dict) else {}
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return _json(422, {"detail": [{"loc": ["body", "text"], "msg": "Field required"}]})
        if len(text) > self.max_characters:
            return _json(
                400,
                _error_body(
                    "max_character_limit_exceeded",
                    f"Text is too long: {len(text)} characters, the limit is "
                    f"{self.max_characters}.",
                ),
            )
        output_format = request.query.get("output_format", ["mp3_44100_128"])[0]
        with self._lock:
            self.characters += len(text)
        content_type = "audio/mpeg" if output_format.startswith("mp3_") else "audio/basic"
        return (
            200,
            {"Content-Type": content_type, "x-character-count": str(len(text))},
            fake_audio(text=text, voice_id=voice_id),
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeElevenLabs

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has closed its socket before the late answer; that is
        # the point of a scripted delay, not an error worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def _serve(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            json=body,
        )
        scripted = fake._record(request)
        fake._wait(fake.delay)
        if scripted is not None:
            fake._wait(scripted.delay)
        if fake._stopping.is_set():
            return
        if scripted is not None and scripted.status is not None:
            if isinstance(scripted.body, str):  # say, a proxy's HTML error page
                status, headers = scripted.status, {"Content-Type": "text/html"}
                content = scripted.body.encode()
            else:
                status, headers, content = _json(scripted.status, scripted.body)
            headers.update(scripted.headers)
        else:
            status, headers, content = fake._answer(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def _error_body(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


def _voice_not_found(voice_id: str) -> tuple[int, dict[str, str], bytes]:
    return _json(
        404,
        _error_body("voice_not_found", f"A voice with the voice_id {voice_id} was not found."),
    )


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
