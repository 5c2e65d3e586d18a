"""Speech clips: each line rendered once, stored, and served to Twilio's <Play>.

A clip is content-addressed: the same text with the same voice, model, settings and
format is one row and one file, however many calls speak it. Rendering is claimed by
inserting the row: the process that inserts it asks ElevenLabs, every other process that
wants the same line waits for that one, so a line is never billed twice.

Live AI lines (``new_text``) are rendered with the fast model (ELEVENLABS_LIVE_MODEL),
every other line with the quality one (ELEVENLABS_MODEL). A caller on a live call gives a
``deadline`` (a ``time.monotonic()`` instant): neither the rendering nor the wait for
another process's rendering goes past it, and a rendering given up at it hands its claim
back at once for the next process that wants the line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from callcenter import media
from callcenter.metrics import CHARACTERS_SENT, CLIP_LOOKUPS, CLIPS_RENDERED, SPEECH_FALLBACKS
from callcenter.queries import insert_unless_taken, one_or_none
from callcenter.text import truncate
from voices import speech
from voices.models import SpeechClip, Voice

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1
# A failed line is tried again after this long, not on every call that wants it: during an
# outage, calls fall back at once instead of each waiting through the retries.
FAILED_COOL_DOWN = timedelta(seconds=60)
# A clip's audio never changes for its token: caches may keep it for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# The cache keeps each clip's presigned URL under this prefix and its token.
SIGNED_URL_CACHE_PREFIX = "voices:clip-url:"


class ClipFailed(Exception):
    """The line could not be rendered; ``reason`` is the provider's or ours."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClipDeadlineExceeded(ClipFailed):
    """The caller's deadline came before the clip was ready (rendered or waited for)."""


def model_for(*, new_text: bool) -> str:
    """The model a line is rendered with: the fast one for live AI lines (``new_text``),
    the quality one for every other line."""
    return settings.ELEVENLABS_LIVE_MODEL if new_text else settings.ELEVENLABS_MODEL


def clip_key(
    *, text: str, voice_id: str, model_id: str, voice_settings: dict, output_format: str
) -> str:
    """The content address of a clip: what the provider would be asked, hashed."""
    material = json.dumps(
        [text, voice_id, model_id, voice_settings, output_format],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def render_budget_seconds() -> float:
    """The longest one rendering may take, retries, back-off and waits for a concurrency
    slot included (a renderer silent for longer is taken over)."""
    return speech.request_budget_seconds() + 5.0


def render_clip(
    *,
    text: str,
    voice: Voice,
    model_id: str | None = None,
    voice_settings: dict | None = None,
    output_format: str = speech.OUTPUT_FORMAT,
    new_text: bool = False,
    deadline: float | None = None,
) -> SpeechClip:
    """The ready clip of ``text`` in ``voice``, rendering it only if nobody has.

    ``new_text`` says the line is a live AI line, most likely never said before (a
    model's sentence): it is rendered with the fast model (``model_for``), and the claim is
    tried first, one statement instead of a lookup and then the claim; a line that exists
    after all costs the lookup after the claim that failed.

    ``deadline`` (a ``time.monotonic()`` instant) bounds the rendering and the wait for
    another process's rendering; past it nothing is claimed and ClipDeadlineExceeded is
    raised, and a rendering of ours given up at it leaves the clip free to be claimed.

    Raises ClipFailed when the provider refuses the line or stays unavailable, and when
    a concurrent rendering of the same line does not finish in time. Each lookup counts
    once in ``callcenter_speech_clip_lookups_total`` (hit, miss or wait); one refused for
    a recent failure, or at the deadline before anything was looked up, does not.
    """
    text = " ".join(text.split())
    model_id = model_id or model_for(new_text=new_text)
    voice_settings = voice.settings if voice_settings is None else voice_settings
    key = clip_key(
        text=text,
        voice_id=voice.provider_voice_id,
        model_id=model_id,
        voice_settings=voice_settings,
        output_format=output_format,
    )
    waited_until = time.monotonic() + render_budget_seconds()
    if deadline is not None:
        waited_until = min(waited_until, deadline)
    waited = False
    look_first = not new_text
    while True:
        clip = one_or_none(SpeechClip.objects.filter(key=key)) if look_first else None
        look_first = True
        if clip is None:
            if _past(deadline):
                raise ClipDeadlineExceeded(f"the deadline passed before rendering ({key[:12]})")
            clip = _claim_new(
                key=key,
                text=text,
                voice=voice,
                model_id=model_id,
                voice_settings=voice_settings,
                output_format=output_format,
            )
            if clip is not None:
                CLIP_LOOKUPS.labels(result="miss").inc()
                return _render(clip, deadline=deadline)
            continue  # another process inserted it first: read theirs
        if clip.status == SpeechClip.Status.READY:
            CLIP_LOOKUPS.labels(result="wait" if waited else "hit").inc()
            return clip
        if clip.status == SpeechClip.Status.FAILED and (
            clip.updated_at > timezone.now() - FAILED_COOL_DOWN
        ):
            raise ClipFailed(clip.error_message)
        if not _past(deadline) and _reclaim(clip):
            CLIP_LOOKUPS.labels(result="miss").inc()
            return _render(clip, deadline=deadline)
        left = waited_until - time.monotonic()
        if left <= 0 or _past(deadline):
            CLIP_LOOKUPS.labels(result="wait").inc()
            if _past(deadline):
                raise ClipDeadlineExceeded(
                    f"the deadline passed while another process rendered this line ({key[:12]})"
                )
            raise ClipFailed(
                f"the rendering of this line by another process did not finish ({key[:12]})"
            )
        time.sleep(min(POLL_SECONDS, left))
        waited = True


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _claim_new(
    *,
    key: str,
    text: str,
    voice: Voice,
    model_id: str,
    voice_settings: dict,
    output_format: str,
) -> SpeechClip | None:
    """Insert the clip row as our claim; None when another process inserted it first."""
    clip = SpeechClip(
        key=key,
        text=text,
        voice=voice,
        model_id=model_id,
        voice_settings=voice_settings,
        output_format=output_format,
        rendering_started_at=timezone.now(),
    )
    return clip if insert_unless_taken(clip) else None


def _reclaim(clip: SpeechClip) -> bool:
    """Take over a failed clip, one whose renderer went silent past its budget, or one
    handed back by a renderer that gave up at its caller's deadline (no claim time).

    A compare-and-set on the claim time: of several processes, exactly one wins.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=render_budget_seconds())
    if clip.status == SpeechClip.Status.RENDERING and (
        clip.rendering_started_at is not None and clip.rendering_started_at > stale_before
    ):
        return False
    won = SpeechClip.objects.filter(
        pk=clip.pk, status=clip.status, rendering_started_at=clip.rendering_started_at
    ).update(status=SpeechClip.Status.RENDERING, rendering_started_at=now, error_message="")
    if won:
        clip.status, clip.rendering_started_at, clip.error_message = (
            SpeechClip.Status.RENDERING,
            now,
            "",
        )
    return bool(won)


def _render(clip: SpeechClip, *, deadline: float | None) -> SpeechClip:
    """Ask the provider for the claimed clip, store the audio, mark it ready (or failed).

    Given up at the caller's deadline, the claim is handed back (the clip stays
    ``rendering`` with no claim time), so the next process that wants the line renders
    it at once instead of refusing it for a failure or waiting for a stale claim.
    """
    if deadline is not None:
        # Never past the request's own budget either: a renderer still at work after
        # render_budget_seconds() would have its claim taken over and the line billed twice.
        deadline = min(deadline, time.monotonic() + speech.request_budget_seconds())
    try:
        audio = speech.synthesize(
            text=clip.text,
            voice_id=clip.voice.provider_voice_id,
            model_id=clip.model_id,
            voice_settings=clip.voice_settings,
            output_format=clip.output_format,
            deadline=deadline,
        )
    except speech.SpeechDeadlineExceeded as exc:
        CLIPS_RENDERED.labels(outcome="abandoned").inc()
        SpeechClip.objects.filter(
            pk=clip.pk,
            status=SpeechClip.Status.RENDERING,
            rendering_started_at=clip.rendering_started_at,
        ).update(rendering_started_at=None, updated_at=timezone.now())
        raise ClipDeadlineExceeded(str(exc)) from exc
    except (speech.SpeechUnavailable, speech.SpeechRejected) as exc:
        CLIPS_RENDERED.labels(outcome="failed").inc()
        clip.status = SpeechClip.Status.FAILED
        clip.error_message = truncate(exc)
        clip.save(update_fields=["status", "error_message", "updated_at"])
        raise ClipFailed(str(exc)) from exc
    CHARACTERS_SENT.inc(audio.characters)
    try:
        clip.audio.save(f"{clip.token}.mp3", ContentFile(audio.content), save=False)
    except media.STORAGE_ERRORS as exc:
        # The media storage (a bucket down, a full disk) failed: the line is spoken with
        # <Say>, and tried again after the cool-down.
        CLIPS_RENDERED.labels(outcome="failed").inc()
        logger.warning("could not store a rendered clip: %s", exc)
        clip.status = SpeechClip.Status.FAILED
        clip.error_message = truncate(f"storage: {exc}")
        clip.save(update_fields=["status", "error_message", "updated_at"])
        raise ClipFailed(clip.error_message) from exc
    CLIPS_RENDERED.labels(outcome="rendered").inc()
    clip.content_type = audio.content_type
    clip.size_bytes = len(audio.content)
    clip.characters = audio.characters
    clip.status = SpeechClip.Status.READY
    clip.save(
        update_fields=["audio", "content_type", "size_bytes", "characters", "status", "updated_at"]
    )
    return clip


def clip_url(clip: SpeechClip) -> str:
    """The absolute URL Twilio fetches for <Play>: public, but only by knowing the token.

    CLIP_URLS=app: our clip view (voices.views.clip_audio), which reads the storage.
    CLIP_URLS=signed: the bucket's own presigned URL (`signed_clip_url`).
    """
    if settings.CLIP_URLS == "signed":
        return signed_clip_url(clip)
    return settings.APP_URL + reverse("voices:clip", kwargs={"token": clip.token})


def signed_clip_url(clip: SpeechClip) -> str:
    """A presigned GET of the clip's object, valid CLIP_SIGNED_URL_SECONDS from signing.

    Twilio caches <Play> audio by its URL (help.twilio.com "How can I change the cache
    behavior of audio files?"), and each signing makes a new URL: one URL per clip is kept
    in the cache, and handed out while it has at least a call's lifetime left, so calls in
    that window share Twilio's cached copy. The response carries the clip's own type and
    the cache headers our clip view sends (S3's response-* overrides of a signed GET).
    """
    key = f"{SIGNED_URL_CACHE_PREFIX}{clip.token}"
    url = cache.get(key)
    if isinstance(url, str):
        return url
    url = media.presigned_url(
        clip.audio.storage,
        str(clip.audio.name),
        seconds=settings.CLIP_SIGNED_URL_SECONDS,
        parameters={
            "ResponseContentType": clip.content_type,
            "ResponseCacheControl": CACHE_CONTROL,
        },
    )
    reuse_for = settings.CLIP_SIGNED_URL_SECONDS - media.CALL_LIFETIME_SECONDS
    if reuse_for > 0:
        cache.set(key, url, timeout=reuse_for)
    return url


@dataclass(frozen=True)
class Speech:
    """How to speak one line: <Play> ``url`` when set, else <Say> ``text`` in ``language``.

    ``clip_id`` is the SpeechClip played (None for a <Say> fallback); ``fallback_reason``
    says why there is none: not_configured, no_voice, deadline or provider_failed.
    """

    text: str
    language: str
    url: str = ""
    fallback_reason: str = ""
    clip_id: int | None = None

    @property
    def is_fallback(self) -> bool:
        return not self.url


def speech_for_line(
    *,
    text: str,
    voice: Voice | None,
    language: str,
    new_text: bool = False,
    deadline: float | None = None,
) -> Speech:
    """The clip of ``text`` when it can be had by ``deadline`` (a ``time.monotonic()``
    instant), else a <Say> fallback with its reason (``new_text`` and ``deadline``: see
    ``render_clip``).

    The fallback is counted in the ``callcenter_speech_fallbacks_total`` metric; callers
    on a call record it on the call too.
    """
    text = " ".join(text.split())
    if not speech.is_configured():
        reason = "not_configured"
    elif voice is None:
        reason = "no_voice"
    else:
        try:
            clip = render_clip(text=text, voice=voice, new_text=new_text, deadline=deadline)
        except ClipDeadlineExceeded as exc:
            logger.warning("speaking a line with <Say>, out of time: %s", exc.reason)
            reason = "deadline"
        except ClipFailed as exc:
            logger.warning("speaking a line with <Say>: %s", exc.reason)
            reason = "provider_failed"
        else:
            return Speech(text=text, language=language, url=clip_url(clip), clip_id=clip.pk)
    SPEECH_FALLBACKS.labels(reason=reason).inc()
    return Speech(text=text, language=language, fallback_reason=reason)
