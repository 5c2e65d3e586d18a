"""A fake ElevenLabs API on 127.0.0.1, for driving the real SDK over HTTP in tests.

It serves the endpoints `voices/speech.py` calls (the voices listing, v1 and v2, and
text-to-speech), checks the API key like ElevenLabs does, records every request, and
plays scripted faults (error statuses, slow responses) before answering normally again.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qs

from tests.fakes import server
from tests.fakes.server import LocalFakeServer, Response, Scripted, json_response

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
class RecordedRequest(server.RecordedRequest):
    json: Any


class FakeElevenLabs(LocalFakeServer[RecordedRequest]):
    """A fake ElevenLabs server; use as a context manager or with start() and stop()."""

    thread_name = "fake-elevenlabs"

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        voices: list[dict[str, Any]] | None = None,
        max_characters: int = 5000,
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.voices = default_voices() if voices is None else voices
        self.max_characters = max_characters
        self.delay = delay  # seconds before every answer
        self.characters = 0

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
        self._queue(times, status=status, body=body, headers=headers)

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
    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    # --- Serving (called from handler threads) --------------------------------------------
    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        return RecordedRequest(
            method=method, path=url.path, query=parse_qs(url.query), headers=headers, json=parsed
        )

    def _hold(self, scripted: Scripted | None) -> None:
        self._wait(self.delay)
        super()._hold(scripted)

    def _answer(self, request: RecordedRequest, problems: list[str]) -> Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return json_response(401, _error_body("invalid_api_key", "Invalid API key"))
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == ["v1", "voices"]:
            return json_response(200, {"voices": self._voice_list()})
        if request.method == "GET" and parts == ["v2", "voices"]:
            return self._search_voices(request)
        if request.method == "GET" and parts[:2] == ["v1", "voices"] and len(parts) == 3:
            voice = self._voice(parts[2])
            if voice is None:
                return _voice_not_found(parts[2])
            return json_response(200, voice)
        if (
            request.method == "POST"
            and parts[:2] == ["v1", "text-to-speech"]
            and len(parts) in (3, 4)
            and (len(parts) == 3 or parts[3] == "stream")
        ):
            return self._text_to_speech(request, voice_id=parts[2])
        return json_response(404, {"detail": "Not Found"})

    def _voice_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.voices)

    def _voice(self, voice_id: str) -> dict[str, Any] | None:
        return next((v for v in self._voice_list() if v["voice_id"] == voice_id), None)

    def _search_voices(self, request: RecordedRequest) -> Response:
        voices = self._voice_list()
        page_size = int(request.query.get("page_size", ["10"])[0])
        if not 1 <= page_size <= 100:
            return json_response(
                422, {"detail": [{"loc": ["query", "page_size"], "msg": "invalid"}]}
            )
        start = int(request.query.get("next_page_token", ["0"])[0])
        page = voices[start : start + page_size]
        has_more = start + page_size < len(voices)
        return json_response(
            200,
            {
                "voices": page,
                "has_more": has_more,
                "total_count": len(voices),
                "next_page_token": str(start + page_size) if has_more else None,
            },
        )

    def _text_to_speech(self, request: RecordedRequest, *, voice_id: str) -> Response:
        if self._voice(voice_id) is None:
            return _voice_not_found(voice_id)
        body = request.json if isinstance(request.json, dict) else {}
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return json_response(
                422, {"detail": [{"loc": ["body", "text"], "msg": "Field required"}]}
            )
        if len(text) > self.max_characters:
            return json_response(
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


def _error_body(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


def _voice_not_found(voice_id: str) -> Response:
    return json_response(
        404,
        _error_body("voice_not_found", f"A voice with the voice_id {voice_id} was not found."),
    )
