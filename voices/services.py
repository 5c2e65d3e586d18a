"""The voice catalogue: kept in step with the ElevenLabs account, and the default voice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from voices import speech
from voices.models import Voice

logger = logging.getLogger(__name__)

SYNCED_FIELDS = ("name", "language", "labels", "preview_url", "settings")


class HasVoice(Protocol):
    voice: Voice | None


@dataclass(frozen=True)
class SyncResult:
    """What a catalogue sync did; `missing` rows are no longer listed but kept."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    missing: int = 0


def sync_voices() -> SyncResult:
    """Upsert a `Voice` for every voice of the ElevenLabs account, by provider id.

    Voices the account no longer lists are kept (campaigns and clips may use them) and
    counted as missing. Raises what `speech.list_voices` raises.
    """
    listed = {voice.voice_id: _voice_values(voice) for voice in speech.list_voices()}
    created = updated = unchanged = 0
    with transaction.atomic():
        # Locked so that two syncs at once (admin and beat) apply one after the other.
        existing = Voice.objects.select_for_update().in_bulk(field_name="provider_voice_id")
        for provider_voice_id, values in listed.items():
            voice = existing.get(provider_voice_id)
            if voice is None:
                voice, inserted = _insert_voice(provider_voice_id=provider_voice_id, values=values)
                if inserted:
                    created += 1
                    continue
            changed = [name for name, value in values.items() if getattr(voice, name) != value]
            if not changed:
                unchanged += 1
                continue
            for name in changed:
                setattr(voice, name, values[name])
            voice.full_clean(validate_unique=False)
            voice.save(update_fields=[*changed, "updated_at"])
            updated += 1
        missing = len(existing.keys() - listed.keys())
    result = SyncResult(created=created, updated=updated, unchanged=unchanged, missing=missing)
    logger.info("Voices synced from ElevenLabs: %s", result)
    return result


def resolve_default_voice() -> Voice | None:
    """The default voice: the one staff chose (``is_default``), else the one named by
    ELEVENLABS_DEFAULT_VOICE, by provider id, else by name ignoring case. One query."""
    wanted = settings.ELEVENLABS_DEFAULT_VOICE.strip()
    chosen = Q(is_default=True)
    if wanted:
        chosen |= Q(provider_voice_id=wanted) | Q(name__iexact=wanted)
    rank = Case(
        When(is_default=True, then=Value(0)),
        When(provider_voice_id=wanted, then=Value(1)),
        default=Value(2),
    )
    return Voice.objects.filter(chosen).order_by(rank, "name", "pk").first()


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


def _voice_values(voice: speech.ProviderVoice) -> dict[str, Any]:
    """The provider's voice as model field values, made to fit the columns.

    One odd value from the provider must not fail the whole sync: a name or language too
    long is cut, a preview URL that would not validate is dropped.
    """
    field = Voice._meta.get_field
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
