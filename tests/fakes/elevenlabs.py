"""A fake ElevenLabs API on 127.0.0.1, for driving the real SDK over HTTP in tests.

It serves the endpoints `voices/speech.py` calls (the voices listing, v1 and v2, one voice
by id, text-to-speech and the account's subscription), checks the API key like ElevenLabs
does (a key restricted to some permissions too), records every request, and plays
scripted faults (error statuses, slow responses) before answering normally again. For
benchmarks it also limits requests in flight as a plan does, answers a seeded fraction of
requests with 429 or 5xx, and takes a configurable time per request.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qs

from tests.fakes import server
from tests.fakes.server import (
    FakeRequestHandler,
    LocalFakeServer,
    Response,
    Scripted,
    json_response,
)

# Premade voices by id, named as today's catalogue names them. EXAVITQu4vr4xnSDxMaL was
# "Bella" until ElevenLabs renamed its premade voices; it is "Sarah" now.
SARAH_ID = "EXAVITQu4vr4xnSDxMaL"
BELLA_ID = SARAH_ID  # the same voice, by the name the deployment guide used
GEORGE_ID = "JBFqnCBsd6RMkjVDRZzb"
# One of the original premade voices, no longer listed by today's catalogue. The fake
# still serves it by id (GET /v1/voices/{id}, text-to-speech) as it serves library voices
# an account has not added; whether ElevenLabs keeps legacy voices usable so is not
# documented, so product code must not rely on it.
ANTONI_ID = "ErXwobaYiN019PkySvjV"


def _preview(voice_id: str) -> str:
    return (
        f"https://storage.googleapis.com/eleven-public-prod/premade/voices/{voice_id}/preview.mp3"
    )


def default_voices() -> list[dict[str, Any]]:
    """Two premade voices shaped like ElevenLabs' voice listing, with today's names."""
    return [
        {
            "voice_id": SARAH_ID,
            "name": "Sarah",
            "category": "premade",
            "labels": {"accent": "castilian", "gender": "female"},
            "description": "Warm and clear.",
            "preview_url": _preview(SARAH_ID),
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
            "voice_id": GEORGE_ID,
            "name": "George",
            "category": "premade",
            "labels": {"accent": "british", "gender": "male", "language": "en"},
            "preview_url": _preview(GEORGE_ID),
            "settings": None,
        },
    ]


def unlisted_voices() -> list[dict[str, Any]]:
    """Voices served by id but not listed (see ANTONI_ID)."""
    return [
        {
            "voice_id": ANTONI_ID,
            "name": "Antoni",
            "category": "premade",
            "labels": {"accent": "american", "gender": "male", "language": "en"},
            "preview_url": _preview(ANTONI_ID),
            "settings": None,
        }
    ]


def latency_by_model(
    seconds: dict[str, float], *, default: float = 0.0
) -> Callable[[RecordedRequest], float]:
    """A ``delay`` for FakeElevenLabs: text-to-speech takes the time given for its model
    (elevenlabs.io/docs/overview/models: eleven_flash_v2_5 answers in about 75 ms of
    model time, eleven_multilingual_v2 is slower), anything else ``default``."""

    def delay(request: RecordedRequest) -> float:
        body = request.json if isinstance(request.json, dict) else {}
        if "/text-to-speech/" not in request.path:
            return default
        return seconds.get(str(body.get("model_id")), default)

    return delay


# The permission each endpoint needs of a restricted key: "API keys can be restricted to
# specific endpoints" (elevenlabs.io/docs/api-reference/authentication), named as the
# API's refusals name them (see `_missing_permission`).
PERMISSIONS = {"voices": "voices_read", "user": "user_read", "text-to-speech": "text_to_speech"}


def default_subscription() -> dict[str, Any]:
    """A Creator plan's subscription as GET /v1/user/subscription answers (the API
    reference, "Get user subscription"; the SDK's `elevenlabs.types.Subscription`)."""
    return {
        "tier": "creator",
        "character_count": 12_000,
        "character_limit": 100_000,
        "max_character_limit_extension": None,
        "max_credit_limit_extension": 0,
        "can_extend_character_limit": True,
        "allowed_to_extend_character_limit": False,
        "next_character_count_reset_unix": 1_767_225_600,  # 2026-01-01T00:00:00Z
        "voice_slots_used": 0,
        "professional_voice_slots_used": 0,
        "professional_voice_slots_used_in_workspace": 0,
        "voice_limit": 30,
        "max_voice_add_edits": 95,
        "voice_add_edit_counter": 0,
        "professional_voice_limit": 1,
        "can_extend_voice_limit": False,
        "can_use_instant_voice_cloning": True,
        "can_use_professional_voice_cloning": True,
        "currency": "usd",
        "current_overage": {"amount": "0", "currency": "usd"},
        "status": "active",
        "billing_period": "monthly_period",
        "character_refresh_period": "monthly_period",
        "next_invoice": None,
        "open_invoices": [],
        "has_open_invoices": False,
    }


def fake_audio(*, text: str, voice_id: str) -> bytes:
    """The bytes the fake renders for `text` in a voice: an ID3 tag and a digest."""
    return b"ID3" + hashlib.sha256(f"{voice_id}\n{text}".encode()).digest()


@dataclass(frozen=True)
class RecordedRequest(server.RecordedRequest):
    json: Any


class _Handler(FakeRequestHandler):
    def _serve(self) -> None:
        # A request is in flight from its arrival to the end of its answer.
        fake: FakeElevenLabs = self.server.fake  # type: ignore[assignment]
        fake._enter()
        try:
            super()._serve()
        finally:
            fake._leave()


class FakeElevenLabs(LocalFakeServer[RecordedRequest]):
    """A fake ElevenLabs server; use as a context manager or with start() and stop().

    ``max_concurrent`` limits requests in flight as ElevenLabs' plans do (None: no
    limit); ``failure_rate`` answers that fraction of requests with 429 or 5xx, drawn
    from ``seed``; ``delay`` is the time taken before every answer, seconds or a function
    of the request (say, by its model).
    """

    thread_name = "fake-elevenlabs"
    handler_class = _Handler

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        voices: list[dict[str, Any]] | None = None,
        unlisted: list[dict[str, Any]] | None = None,
        max_characters: int = 5000,
        delay: float | Callable[[RecordedRequest], float] = 0.0,
        max_concurrent: int | None = None,
        failure_rate: float = 0.0,
        seed: int | None = None,
        permissions: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        # What a restricted key may do (PERMISSIONS' values); None: everything.
        self.permissions = permissions
        # The subscription GET /v1/user/subscription answers; its character_count grows
        # with the characters rendered here.
        self.subscription = default_subscription()
        self.voices = default_voices() if voices is None else voices
        self.unlisted = unlisted_voices() if unlisted is None else unlisted
        self.max_characters = max_characters
        self.delay = delay
        self.characters = 0
        self.max_concurrent = max_concurrent
        self.failure_rate = failure_rate
        self._random = random.Random(seed)  # reproducible faults, not secrets
        # Counters for benchmarks: 429s for the concurrency limit, random failures sent,
        # and the most requests ever in flight at once.
        self.concurrency_rejections = 0
        self.random_failures = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._local = threading.local()

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

    def _record(self, request: RecordedRequest) -> tuple[Scripted | None, list[str]]:
        self._local.request = request
        self._local.at_once = True
        if self._local.rejected:
            # Over the plan's limit ElevenLabs answers at once, and a scripted answer
            # stays queued for the next request it accepts (help.elevenlabs.io, "API
            # Error Code 429": too_many_concurrent_requests).
            problems = self._check_request(request)
            with self._lock:
                self._requests.append(request)
            return self._concurrency_answer(), problems
        scripted, problems = super()._record(request)
        if scripted is None and self.failure_rate and self._draw() < self.failure_rate:
            return self._random_failure(), problems
        self._local.at_once = False
        return scripted, problems

    def _hold(self, scripted: Scripted | None) -> None:
        if not self._local.at_once:
            request = self._local.request
            self._wait(self.delay(request) if callable(self.delay) else self.delay)
        super()._hold(scripted)

    def _enter(self) -> None:
        """Count a request in flight, or mark it rejected when the limit is reached."""
        with self._lock:
            rejected = self.max_concurrent is not None and self._in_flight >= self.max_concurrent
            if rejected:
                self.concurrency_rejections += 1
            else:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
        self._local.rejected = rejected

    def _leave(self) -> None:
        if not self._local.rejected:
            with self._lock:
                self._in_flight -= 1

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def _concurrency_answer(self) -> Scripted:
        # elevenlabs.io/docs (API reference, errors) and the help article: 429 with
        # detail.status "too_many_concurrent_requests", the plan's limit in the message.
        return Scripted(
            status=429,
            body=_error_body(
                "too_many_concurrent_requests",
                "Too many concurrent requests. Your current subscription is associated with "
                f"a maximum of {self.max_concurrent} concurrent requests (running in "
                "parallel). This is done such that a single user does not overwhelm our "
                "systems and affect other users negatively. Please upgrade your "
                "subscription or contact sales if you want to increase this limit.",
            ),
        )

    def _random_failure(self) -> Scripted:
        # The transient failures ElevenLabs documents: 429 system_busy ("our services
        # were experiencing high levels of traffic", help article above) and 5xx.
        with self._lock:
            self.random_failures += 1
            status = self._random.choice([429, 500, 503])
        if status == 429:
            body = _error_body(
                "system_busy",
                "Our services are experiencing high levels of traffic and your request could "
                "not be processed. Please try again.",
            )
        else:
            body = _error_body("internal_error", f"Random failure with status {status}.")
        return Scripted(status=status, body=body)

    def _answer(self, request: RecordedRequest, problems: list[str]) -> Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return json_response(401, _error_body("invalid_api_key", "Invalid API key"))
        parts = request.path.strip("/").split("/")
        if (missing := self._missing_permission(parts)) is not None:
            return missing
        if request.method == "GET" and parts == ["v1", "user", "subscription"]:
            with self._lock:
                subscription = copy.deepcopy(self.subscription)
                if isinstance(subscription.get("character_count"), int):
                    subscription["character_count"] += self.characters
            return json_response(200, subscription)
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

    def _missing_permission(self, parts: list[str]) -> Response | None:
        """The refusal of a request its restricted key may not make: 401 with
        detail.status "missing_permissions", as ElevenLabs answers (its words, as quoted
        in danielmiessler/LifeOS#667 for /v1/user)."""
        needed = PERMISSIONS.get(parts[1]) if len(parts) > 1 else None
        if self.permissions is None or needed is None or needed in self.permissions:
            return None
        return json_response(
            401,
            _error_body(
                "missing_permissions",
                f"The API key you used is missing the permission {needed} to execute this "
                "operation.",
            ),
        )

    def _voice_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.voices)

    def _voice(self, voice_id: str) -> dict[str, Any] | None:
        """A voice the account may use by id: listed, or not (elevenlabs.io/docs API
        reference, "Get voice": GET /v1/voices/{voice_id}, 404 voice_not_found)."""
        with self._lock:
            known = copy.deepcopy([*self.voices, *self.unlisted])
        return next((v for v in known if v["voice_id"] == voice_id), None)

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
