"""The voice catalogue: kept in step with the ElevenLabs account, and the default voice."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from voices import speech

if TYPE_CHECKING:
    from django.db.models import Field
from voices.models import Voice

logger = logging.getLogger(__name__)

SYNCED_FIELDS = ("name", "language", "labels", "preview_url", "settings")

# ElevenLabs' original premade voices, by the names guides (ours among them) still use.
# ElevenLabs has renamed some since (EXAVITQu4vr4xnSDxMaL, "Bella", is "Sarah" in today's
# catalogue) and dropped others from the listing: the id is what stays.
LEGACY_PREMADE_VOICES = {
    "rachel": "21m00Tcm4TlvDq8ikWAM",
    "domi": "AZnzlk1XvdvUeBnXmlld",
    "bella": "EXAVITQu4vr4xnSDxMaL",
    "antoni": "ErXwobaYiN019PkySvjV",
    "elli": "MF3mGyEYCl7XYWbV9V6O",
    "josh": "TxGEqnHWrfWFTfGW9XjX",
    "arnold": "VR6AewLTigWG4xSOukaG",
    "adam": "pNInz6obpgDQGcFmaJgB",
    "sam": "yoZ06aMxZJJ28mfd3POQ",
}
# What an ElevenLabs voice id looks like (premade, cloned and library voices alike).
VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")
# The default voice is looked up, and the catalogue synced when it lacks the voice, while
# staff wait (a campaign start): not for long.
LOOKUP_SECONDS = 15.0
# For this long after a sync the catalogue counts as fresh: a campaign start that finds no
# voice then does not list it again (the setting names no voice of the account).
FRESH_SECONDS = 60
SYNCED_KEY = "voices:synced"
# Claims that keep a background sync from being queued twice within CLAIM_SECONDS: one
# for workers starting together with an empty catalogue, one for campaign starts that
# could not reach ElevenLabs (given back once a sync succeeds).
FIRST_SYNC_CLAIM = "voices:first-sync-queued"
RETRY_SYNC_CLAIM = "voices:sync-queued"
CLAIM_SECONDS = 10 * 60


class HasVoice(Protocol):
    voice: Voice | None


@dataclass(frozen=True)
class SyncResult:
    """What a catalogue sync did; `missing` rows are no longer listed but kept. The names
    say which voices ("Sarah (EXAVITQu4vr4xnSDxMaL)"), for an operator to read."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    missing: int = 0
    created_names: tuple[str, ...] = field(default=(), compare=False)
    updated_names: tuple[str, ...] = field(default=(), compare=False)
    missing_names: tuple[str, ...] = field(default=(), compare=False)

    def counts(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "missing": self.missing,
        }


def sync_voices(*, deadline: float | None = None) -> SyncResult:
    """Upsert a `Voice` for every voice of the ElevenLabs account, by provider id.

    Voices the account no longer lists are kept (campaigns and clips may use them) and
    counted as missing. ``deadline`` (a `time.monotonic()` instant) bounds the requests.
    Raises what `speech.list_voices` raises.
    """
    listed = {
        voice.voice_id: _voice_values(voice) for voice in speech.list_voices(deadline=deadline)
    }
    created, updated, unchanged = [], [], 0
    with transaction.atomic():
        # Locked so that two syncs at once (admin and beat) apply one after the other.
        existing = Voice.objects.select_for_update().in_bulk(field_name="provider_voice_id")
        for provider_voice_id, values in listed.items():
            voice = existing.get(provider_voice_id)
            if voice is None:
                voice, inserted = _insert_voice(provider_voice_id=provider_voice_id, values=values)
                if inserted:
                    created.append(_named(voice))
                    continue
            changed = [name for name, value in values.items() if getattr(voice, name) != value]
            if not changed:
                unchanged += 1
                continue
            for name in changed:
                setattr(voice, name, values[name])
            voice.full_clean(validate_unique=False)
            voice.save(update_fields=[*changed, "updated_at"])
            updated.append(_named(voice))
        missing = sorted(_named(existing[key]) for key in existing.keys() - listed.keys())
    # The default voice may be one the account does not list (a legacy premade voice, a
    # library voice): fetched by its id, outside the lock.
    try:
        default, fetched = _fetch_default_voice(deadline=deadline)
    except speech.SpeechUnavailable as exc:
        logger.warning("Default voice not fetched from ElevenLabs: %s", exc)
        default, fetched = None, False
    if fetched and default is not None:
        created.append(_named(default))
    result = SyncResult(
        created=len(created),
        updated=len(updated),
        unchanged=unchanged,
        missing=len(missing),
        created_names=tuple(created),
        updated_names=tuple(updated),
        missing_names=tuple(missing),
    )
    cache.set(SYNCED_KEY, True, timeout=FRESH_SECONDS)
    cache.delete(RETRY_SYNC_CLAIM)  # a start that could not reach ElevenLabs may queue again
    logger.info("Voices synced from ElevenLabs: %s", result.counts())
    return result


def queue_voice_sync(*, claim: str) -> bool:
    """Queue a sync of the catalogue (`sync_voices_task`, retried while ElevenLabs is
    unavailable) unless ``claim`` was taken within CLAIM_SECONDS; whether this queued it.
    Call it outside a transaction, or from one's on_commit."""
    from voices.tasks import sync_voices_task  # voices.tasks imports this module

    if not cache.add(claim, True, timeout=CLAIM_SECONDS):
        logger.info("Voice sync not queued: one was queued within %d s (%s)", CLAIM_SECONDS, claim)
        return False
    sync_voices_task.delay()
    logger.info("Voice sync queued (%s)", claim)
    return True


def queue_first_voice_sync() -> bool:
    """At a worker's start: queue a sync when ElevenLabs is configured and the catalogue is
    empty, once for all the workers that start together. Whether this queued it."""
    if not speech.is_configured() or Voice.objects.exists():
        return False
    return queue_voice_sync(claim=FIRST_SYNC_CLAIM)


def default_voice_id() -> str:
    """The ElevenLabs id ELEVENLABS_DEFAULT_VOICE names on its own: a legacy premade
    name's id, or the value itself when it looks like an id; empty for any other name."""
    wanted = settings.ELEVENLABS_DEFAULT_VOICE.strip()
    legacy = LEGACY_PREMADE_VOICES.get(wanted.casefold())
    if legacy:
        return legacy
    return wanted if VOICE_ID.fullmatch(wanted) else ""


def resolve_default_voice() -> Voice | None:
    """The default voice: the one staff chose (``is_default``), else the one named by
    ELEVENLABS_DEFAULT_VOICE: a legacy premade name by its id ("Bella" is Sarah's), else
    by provider id, else by catalogue name ignoring case. One query, no request."""
    wanted = settings.ELEVENLABS_DEFAULT_VOICE.strip()
    legacy = LEGACY_PREMADE_VOICES.get(wanted.casefold(), "")
    chosen = Q(is_default=True)
    if wanted:
        ids = [voice_id for voice_id in (legacy, wanted) if voice_id]
        chosen |= Q(provider_voice_id__in=ids) | Q(name__iexact=wanted)
    rank = Case(
        When(is_default=True, then=Value(0)),
        When(provider_voice_id=legacy, then=Value(1)),
        When(provider_voice_id=wanted, then=Value(2)),
        default=Value(3),
    )
    return Voice.objects.filter(chosen).order_by(rank, "name", "pk").first()


def ensure_default_voice(*, sync: bool = False, deadline: float | None = None) -> Voice | None:
    """The default voice, fetched from ElevenLabs by id into the catalogue when the
    setting names one by id (or legacy name) that is not in it yet. With ``sync``, when
    that finds none either, the catalogue is synced now (unless it is fresh: synced within
    FRESH_SECONDS) and searched again. For the campaign start, never a call's hot path: it
    may make requests, all within ``deadline`` (LOOKUP_SECONDS from now by default).

    None when no voice answers to the setting. Raises SpeechUnavailable when ElevenLabs
    could not be asked, and with ``sync`` SpeechRejected when it refused the listing.
    """
    deadline = time.monotonic() + LOOKUP_SECONDS if deadline is None else deadline
    voice = _fetch_default_voice(deadline=deadline)[0]
    if voice is not None or not sync or not speech.is_configured() or cache.get(SYNCED_KEY):
        return voice
    logger.info(
        "ELEVENLABS_DEFAULT_VOICE %r is not in the voice catalogue: syncing it now",
        settings.ELEVENLABS_DEFAULT_VOICE,
    )
    sync_voices(deadline=deadline)
    return resolve_default_voice()


def default_voice_problem() -> str:
    """Why campaigns without a voice of their own cannot speak, naming the setting, its
    value and what to do; empty when the default voice resolves or ElevenLabs is not
    configured (lines are then spoken with <Say> by design). One query, no request."""
    if not speech.is_configured() or resolve_default_voice() is not None:
        return ""
    return _(
        "No default voice: ELEVENLABS_DEFAULT_VOICE is “%(value)s”, which names no voice "
        "of the ElevenLabs catalogue, so campaigns without a voice of their own cannot "
        "start. Set ELEVENLABS_DEFAULT_VOICE to a voice id or to the name of a synced "
        "voice, or make a voice the default on the Voices page."
    ) % {"value": settings.ELEVENLABS_DEFAULT_VOICE}


def set_default_voice(*, voice: Voice | None) -> None:
    """Make ``voice`` the default voice of campaigns that name none; with None, go back to
    the voice named by ELEVENLABS_DEFAULT_VOICE."""
    with transaction.atomic():
        # Two choices at once wait on the current default's lock; with none yet, the
        # unique constraint refuses the second (IntegrityError).
        current = list(Voice.objects.select_for_update().filter(is_default=True))
        others = [v.pk for v in current if voice is None or v.pk != voice.pk]
        if others:
            Voice.objects.filter(pk__in=others).update(is_default=False, updated_at=timezone.now())
        if voice is not None:
            Voice.objects.filter(pk=voice.pk).update(is_default=True, updated_at=timezone.now())
            voice.is_default = True
    logger.info("Default voice set to %s", voice if voice is not None else "the setting's")


def voice_for_campaign(*, campaign: HasVoice) -> Voice | None:
    """The campaign's own voice, or the default one when it has none."""
    return campaign.voice or resolve_default_voice()


def _fetch_default_voice(*, deadline: float | None = None) -> tuple[Voice | None, bool]:
    """The default voice, and whether it was fetched into the catalogue just now."""
    voice = resolve_default_voice()
    voice_id = default_voice_id()
    if voice is not None or not voice_id or not speech.is_configured():
        return voice, False
    try:
        provider_voice = speech.get_voice(
            voice_id=voice_id,
            deadline=time.monotonic() + LOOKUP_SECONDS if deadline is None else deadline,
        )
    except speech.SpeechRejected as exc:
        logger.warning(
            "ELEVENLABS_DEFAULT_VOICE %r: ElevenLabs refused the lookup of voice %s: %s",
            settings.ELEVENLABS_DEFAULT_VOICE,
            voice_id,
            exc,
        )
        return None, False
    with transaction.atomic():
        voice, inserted = _insert_voice(
            provider_voice_id=provider_voice.voice_id, values=_voice_values(provider_voice)
        )
    if inserted:
        logger.info("Default voice %s (%s) added from ElevenLabs", voice.name, voice_id)
    return voice, inserted


def _named(voice: Voice) -> str:
    return f"{voice.name} ({voice.provider_voice_id})"


def _voice_values(voice: speech.ProviderVoice) -> dict[str, Any]:
    """The provider's voice as model field values, made to fit the columns.

    One odd value from the provider must not fail the whole sync: a name or language too
    long is cut, a preview URL that would not validate is dropped.
    """

    def field(name: str) -> Field[Any, Any]:
        return cast("Field[Any, Any]", Voice._meta.get_field(name))  # columns, not relations

    try:
        preview_url = field("preview_url").clean(voice.preview_url, None)
    except ValidationError:
        preview_url = ""
    return {
        "name": voice.name[: field("name").max_length],
        "language": voice.language[: field("language").max_length],
        "labels": dict(voice.labels),
        "preview_url": preview_url,
        "settings": dict(voice.settings),
    }


def _insert_voice(*, provider_voice_id: str, values: dict[str, Any]) -> tuple[Voice, bool]:
    """Insert a new voice, or return the row a concurrent sync inserted first."""
    voice = Voice(provider_voice_id=provider_voice_id, **values)
    voice.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            voice.save(force_insert=True)
    except IntegrityError:
        return Voice.objects.select_for_update().get(provider_voice_id=provider_voice_id), False
    return voice, True
