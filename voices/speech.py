"""The ElevenLabs adapter: the only module that imports the elevenlabs SDK.

It returns plain values, reads its settings at call time and raises the project's own
errors: `SpeechUnavailable` when a retry may help (it has already been retried here),
`SpeechRejected` when it cannot (bad key, unknown voice, text too long).

Every request holds one of the account's concurrency slots while it runs
(`voices.concurrency`), and none outlives its deadline: a `time.monotonic()` instant given
by the caller (a live call's webhook), else the request's own budget
(`request_budget_seconds`). No attempt starts, no back-off is waited and no slot is waited
for past it, and each attempt's timeout is cut to the time left.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pydantic
from django.conf import settings
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.parse_error import ParsingError
from elevenlabs.core.request_options import RequestOptions
from elevenlabs.types import GetVoicesV2Response
from elevenlabs.types import Voice as SdkVoice

from callcenter.backoff import BACKOFF_CAP, backoff_seconds, retry_after_seconds
from callcenter.text import truncate
from voices import concurrency

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Twilio's <Play> transcodes whatever it fetches to the phone leg, 8 kHz μ-law at
# 64 kbit/s, so more fidelity is lost on the way. MP3 at 22.05 kHz / 32 kbit/s is the
# smallest format ElevenLabs renders that <Play> accepts: half the bytes of `ulaw_8000`,
# so clips are cheaper to store and quicker for Twilio to fetch. Twilio does not play Opus.
OUTPUT_FORMAT = "mp3_22050_32"
CONTENT_TYPE = "audio/mpeg"

VOICES_PAGE_SIZE = 100  # the most the voices search accepts
# 408 and 429 are the 4xx statuses that say "try again later".
TRANSIENT_STATUSES = frozenset({408, 429})
# Timeouts, refused or dropped connections, proxies, undecodable bodies: all of httpx's
# errors in getting an answer, as opposed to the answer being an error.
TRANSPORT_ERRORS = (httpx.RequestError,)

# An attempt with less time left than this is not started: it could not finish.
MIN_ATTEMPT_SECONDS = 0.05

# Patched by tests so that backoff never waits.
_sleep = time.sleep


class SpeechUnavailable(Exception):
    """A transient failure (timeout, connection error, 429, 5xx) that outlived the retries."""

    def __init__(self, message: str, *, attempts: int, status_code: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code


class SpeechDeadlineExceeded(SpeechUnavailable):
    """The caller's deadline came before an answer: no attempt was started, no back-off
    waited and no concurrency slot waited for past it (`attempts` says how many ran)."""


class SpeechRejected(Exception):
    """A permanent failure: ElevenLabs refused the request and retrying will not help.

    `status_code` is the provider's HTTP status, `provider_message` its own words and
    `provider_status` its code for them (`invalid_api_key`, `missing_permissions`,
    `voice_not_found`...); a request refused before it was sent (no key, blank text) has
    status 0.
    """

    def __init__(
        self, message: str, *, status_code: int, provider_message: str, provider_status: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider_message = provider_message
        self.provider_status = provider_status

    @property
    def is_missing_permission(self) -> bool:
        """The key is valid but restricted: it may not use this endpoint."""
        return self.provider_status == "missing_permissions"


class SpeechNotConfigured(SpeechRejected):
    """No ELEVENLABS_API_KEY is set; no request was made (`status_code` is 0)."""

    def __init__(self) -> None:
        super().__init__(
            "ElevenLabs is not configured: ELEVENLABS_API_KEY is not set",
            status_code=0,
            provider_message="",
        )


@dataclass(frozen=True)
class ProviderVoice:
    """A voice as the ElevenLabs account lists it."""

    voice_id: str
    name: str
    language: str
    labels: dict[str, str] = field(default_factory=dict)
    preview_url: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Subscription:
    """The account's plan and its characters this period (GET /v1/user/subscription):
    `next_reset` is when the count starts again, None when ElevenLabs does not say."""

    tier: str
    status: str
    character_count: int
    character_limit: int
    next_reset: datetime.datetime | None

    @property
    def characters_left(self) -> int:
        return max(0, self.character_limit - self.character_count)


@dataclass(frozen=True)
class Audio:
    """Rendered speech: the bytes, their media type and the characters billed."""

    content: bytes
    content_type: str
    characters: int


def is_configured() -> bool:
    """Whether an ElevenLabs API key is set."""
    return bool(settings.ELEVENLABS_API_KEY)


def list_voices(*, deadline: float | None = None) -> list[ProviderVoice]:
    """Every voice of the account, following the search endpoint's pages (each page a
    request of its own, with its own slot and budget, all within ``deadline``).

    Raises SpeechNotConfigured, SpeechRejected or SpeechUnavailable.
    """
    voices: dict[str, ProviderVoice] = {}
    token: str | None = None
    while True:

        def search(
            client: ElevenLabs, options: RequestOptions, token: str | None = token
        ) -> GetVoicesV2Response:
            return client.voices.search(
                page_size=VOICES_PAGE_SIZE,
                next_page_token=token,
                include_total_count=False,
                request_options=options,
            )

        page = _call("voice listing", search, deadline=deadline)
        for voice in page.voices or ():
            provider_voice = _provider_voice(voice)
            if provider_voice is None:
                logger.warning("ElevenLabs listed a voice without an id; skipped: %r", voice)
            else:
                voices.setdefault(provider_voice.voice_id, provider_voice)
        if not page.has_more or not page.next_page_token or page.next_page_token == token:
            return list(voices.values())
        token = page.next_page_token


def get_voice(*, voice_id: str, deadline: float | None = None) -> ProviderVoice:
    """One voice by its id (GET /v1/voices/{voice_id}), listed by the account or not.

    Raises SpeechNotConfigured, SpeechRejected (status 404: no such voice) or
    SpeechUnavailable.
    """
    voice = _call(
        "voice lookup",
        lambda client, options: client.voices.get(voice_id, request_options=options),
        deadline=deadline,
    )
    provider_voice = _provider_voice(voice)
    if provider_voice is None:
        # An answer without the id asked for is a broken answer, not a refusal.
        raise SpeechUnavailable(
            f"ElevenLabs answered the voice lookup of {voice_id} without a voice id", attempts=1
        )
    return provider_voice


def get_subscription(*, deadline: float | None = None) -> Subscription:
    """The account's plan and characters used and allowed this period.

    Raises SpeechNotConfigured, SpeechRejected (a key restricted without the "User: read"
    permission is `is_missing_permission`) or SpeechUnavailable.
    """
    subscription = _call(
        "subscription lookup",
        lambda client, options: client.user.subscription.get(request_options=options),
        deadline=deadline,
    )
    count, limit = subscription.character_count, subscription.character_limit
    if not isinstance(count, int) or not isinstance(limit, int):
        # The SDK's models are unchecked: an answer without the counts is a broken one.
        raise SpeechUnavailable(
            "ElevenLabs answered the subscription lookup without its character counts",
            attempts=1,
        )
    reset = subscription.next_character_count_reset_unix
    return Subscription(
        tier=_text(subscription.tier),
        status=_text(subscription.status),
        character_count=count,
        character_limit=limit,
        next_reset=(
            datetime.datetime.fromtimestamp(reset, tz=datetime.UTC)
            if isinstance(reset, int) and reset > 0
            else None
        ),
    )


def synthesize(
    *,
    text: str,
    voice_id: str,
    model_id: str | None = None,
    voice_settings: dict[str, Any] | None = None,
    output_format: str = OUTPUT_FORMAT,
    deadline: float | None = None,
) -> Audio:
    """Render `text` with a voice; the model defaults to ELEVENLABS_MODEL.

    ``deadline`` is a `time.monotonic()` instant: past it no attempt starts and no
    back-off or concurrency slot is waited for, and SpeechDeadlineExceeded is raised.

    Raises SpeechNotConfigured, SpeechRejected (also for blank text) or SpeechUnavailable
    (SpeechDeadlineExceeded at the deadline).
    """
    if not text.strip():
        raise SpeechRejected("the text to synthesize is blank", status_code=0, provider_message="")

    # Left out unless given, so the voice's own stored settings apply; the SDK sends a
    # plain dict as it is.
    extra: dict[str, Any] = {"voice_settings": voice_settings} if voice_settings else {}

    def render(client: ElevenLabs, options: RequestOptions) -> bytes:
        # convert() streams: the request is sent, and its errors raised, while iterating,
        # so the whole body is read inside the retried call.
        return b"".join(
            client.text_to_speech.convert(
                voice_id,
                text=text,
                model_id=model_id or settings.ELEVENLABS_MODEL,
                output_format=output_format,
                request_options={**options, "chunk_size": 64 * 1024},
                **extra,
            )
        )

    content = _call("text-to-speech request", render, deadline=deadline)
    return Audio(content=content, content_type=_content_type(output_format), characters=len(text))


def prepare_client() -> None:
    """Make the configured client now rather than during the first line spoken, which
    would wait for its TLS context (docs/decisions/0005-model-requests-as-plain-json.md).
    Nothing without a key."""
    if is_configured():
        _configured_client()


def _configured_client() -> ElevenLabs:
    return _client(
        api_key=settings.ELEVENLABS_API_KEY,
        base_url=settings.ELEVENLABS_BASE_URL,
        timeout=float(settings.ELEVENLABS_TIMEOUT),
    )


def request_budget_seconds() -> float:
    """The longest one request may take without a deadline of the caller's: every
    attempt's timeout and every back-off (waits for a concurrency slot come out of it)."""
    retries = max(0, int(settings.ELEVENLABS_MAX_RETRIES))
    return (retries + 1) * float(settings.ELEVENLABS_TIMEOUT) + BACKOFF_CAP * retries


def _call(
    action: str,
    request: Callable[[ElevenLabs, RequestOptions], T],
    *,
    deadline: float | None,
) -> T:
    """Run `request` with a configured client, holding a concurrency slot for each
    attempt and retrying transient failures with backoff, all before the deadline."""
    if not is_configured():
        raise SpeechNotConfigured
    client = _configured_client()
    until = time.monotonic() + request_budget_seconds() if deadline is None else deadline
    attempts = 1 + max(0, int(settings.ELEVENLABS_MAX_RETRIES))
    problem: str | None = None
    status_code: int | None = None
    for attempt in range(1, attempts + 1):
        if until - time.monotonic() < MIN_ATTEMPT_SECONDS:
            raise _out_of_time(action, attempt - 1, problem, status_code, deadline=deadline)
        slot = concurrency.acquire(until=until - MIN_ATTEMPT_SECONDS)
        if slot is None:
            problem = "every concurrency slot stayed taken (ELEVENLABS_CONCURRENCY)"
            raise _out_of_time(action, attempt - 1, problem, status_code, deadline=deadline)
        # The SDK's own retries are off: this loop is the only one, so attempts are
        # counted and logged in one place and a 401 is never retried. The timeout (of
        # connecting and of each read) is cut to the time left.
        options: RequestOptions = {
            "max_retries": 0,
            "timeout_in_seconds": min(  # type: ignore[typeddict-item]  # httpx takes a float
                float(settings.ELEVENLABS_TIMEOUT),
                max(MIN_ATTEMPT_SECONDS, until - time.monotonic()),
            ),
        }
        retry_after: float | None = None
        status_code = None
        try:
            return request(client, options)
        except ApiError as exc:
            status_code = exc.status_code or 0
            provider_message = _provider_message(exc.body)
            if 400 <= status_code < 500 and status_code not in TRANSIENT_STATUSES:
                raise SpeechRejected(
                    f"ElevenLabs rejected the {action} (HTTP {status_code}): {provider_message}",
                    status_code=status_code,
                    provider_message=provider_message,
                    provider_status=_provider_status(exc.body),
                ) from exc
            problem = f"HTTP {status_code}: {provider_message}"
            if status_code == 429:
                retry_after = retry_after_seconds(exc.headers or {})
            error: Exception = exc
        except ParsingError as exc:
            # A body the SDK cannot read (a proxy's page, a changed schema): retried, and
            # reported as unavailable rather than as a refusal of our request.
            status_code = exc.status_code
            problem = f"unreadable response (HTTP {status_code})"
            error = exc
        except TRANSPORT_ERRORS as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            error = exc
        finally:
            slot.release()
        if attempt == attempts:
            raise SpeechUnavailable(
                f"ElevenLabs {action} failed after {attempts} attempt(s): {problem}",
                attempts=attempts,
                status_code=status_code,
            ) from error
        delay = backoff_seconds(attempt, retry_after)
        if time.monotonic() + delay + MIN_ATTEMPT_SECONDS > until:
            # The next attempt could not start in time: give up now, not after the wait.
            raise _out_of_time(action, attempt, problem, status_code, deadline=deadline) from error
        logger.warning(
            "ElevenLabs %s failed (%s), attempt %d of %d; retrying in %.1fs",
            action,
            problem,
            attempt,
            attempts,
            delay,
        )
        _sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _out_of_time(
    action: str,
    attempts: int,
    problem: str | None,
    status_code: int | None,
    *,
    deadline: float | None,
) -> SpeechUnavailable:
    """The error for a request out of time: the caller's deadline, or its own budget."""
    after = f" after {attempts} attempt(s)" if attempts else ""
    last = f": {problem}" if problem else ""
    if deadline is not None:
        return SpeechDeadlineExceeded(
            f"ElevenLabs {action} gave up at the deadline{after}{last}",
            attempts=attempts,
            status_code=status_code,
        )
    return SpeechUnavailable(
        f"ElevenLabs {action} ran out of time{after}{last}",
        attempts=attempts,
        status_code=status_code,
    )


@functools.lru_cache(maxsize=4)
def _client(*, api_key: str, base_url: str, timeout: float) -> ElevenLabs:
    # One client per configuration keeps its connection pool, so a turn of a live call
    # does not pay a new TLS handshake; settings are still read on every call.
    return ElevenLabs(api_key=api_key, base_url=base_url, timeout=timeout)


def _provider_message(body: Any) -> str:
    """ElevenLabs' own words from an error body.

    It answers `{"detail": {"status": ..., "message": ...}}`, `{"detail": "..."}`, or for
    validation errors `{"detail": [{"loc": ..., "msg": ...}]}`.
    """
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if isinstance(detail, Mapping):
        message = detail.get("message") or detail.get("msg") or detail.get("status")
        return str(message) if message else truncate(dict(detail))
    if isinstance(detail, list):
        messages = [
            str(item.get("msg") or item.get("message") or item)
            if isinstance(item, Mapping)
            else str(item)
            for item in detail
        ]
        return truncate("; ".join(messages))
    if detail is None or detail == "":
        return "no message"
    return truncate(detail)


def _provider_status(body: Any) -> str:
    """ElevenLabs' code for an error, `{"detail": {"status": ...}}`; empty without one."""
    detail = body.get("detail") if isinstance(body, Mapping) else None
    status = detail.get("status") if isinstance(detail, Mapping) else None
    return status if isinstance(status, str) else ""


def _provider_voice(voice: SdkVoice) -> ProviderVoice | None:
    """The SDK's voice as plain values, or None without an id.

    The SDK's models are unchecked (a payload of the wrong shape passes through as it
    is), so every field is read defensively.
    """
    voice_id = _text(voice.voice_id)
    if not voice_id:
        return None
    labels = voice.labels if isinstance(voice.labels, Mapping) else {}
    labels = {str(k): str(v) for k, v in labels.items()}
    voice_settings: object = voice.settings
    if isinstance(voice_settings, pydantic.BaseModel):
        voice_settings = voice_settings.model_dump(exclude_none=True)
    return ProviderVoice(
        voice_id=voice_id,
        name=_text(voice.name) or voice_id,
        language=_language(voice, labels),
        labels=labels,
        preview_url=_text(voice.preview_url),
        settings=dict(voice_settings) if isinstance(voice_settings, Mapping) else {},
    )


def _language(voice: SdkVoice, labels: Mapping[str, str]) -> str:
    """The voice's language as the payload gives it: label, verified language, fine-tuning."""
    verified = voice.verified_languages if isinstance(voice.verified_languages, list) else []
    candidates = [
        labels.get("language"),
        *(getattr(item, "language", None) for item in verified),
        getattr(voice.fine_tuning, "language", None),
    ]
    return next((text for text in map(_text, candidates) if text), "")


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _content_type(output_format: str) -> str:
    codec = output_format.split("_", 1)[0]
    return {
        "mp3": CONTENT_TYPE,
        "ulaw": "audio/basic",
        "alaw": "audio/x-alaw-basic",
        "wav": "audio/wav",
        "opus": "audio/ogg",
    }.get(codec, "application/octet-stream")
