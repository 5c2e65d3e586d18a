"""The ElevenLabs checks: the account and its characters left, and the default voice."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from callcenter.preflight.base import LOW_CHARACTERS_SHARE, Finding, Status, _check
from voices import services as voice_services
from voices import speech

# --- ElevenLabs ------------------------------------------------------------------------


@_check(gettext_noop("ElevenLabs account"))
def check_elevenlabs(*, timeout: float) -> Finding:
    """The ElevenLabs key works, and the characters left this period are shown."""
    if not speech.is_configured():
        return Finding(
            Status.WARN,
            _("No ELEVENLABS_API_KEY: every line is spoken by Twilio's <Say> voices."),
            _("Set ELEVENLABS_API_KEY to speak with ElevenLabs voices."),
        )
    try:
        subscription = speech.get_subscription(deadline=time.monotonic() + timeout)
    except speech.SpeechRejected as exc:
        if exc.is_missing_permission:
            return Finding(
                Status.WARN,
                _("The key works but may not read the subscription: %(message)s")
                % {"message": exc.provider_message},
                _(
                    "Give the key the User read permission (ElevenLabs, API keys) to see "
                    "the characters left here."
                ),
            )
        return _elevenlabs_refused(exc)
    except speech.SpeechUnavailable as exc:
        return _elevenlabs_unavailable(exc)
    left, limit = subscription.characters_left, subscription.character_limit
    until = (
        _(", until %(date)s") % {"date": subscription.next_reset.date().isoformat()}
        if subscription.next_reset
        else ""
    )
    detail = _("%(tier)s plan: %(left)s of %(limit)s characters left%(until)s.") % {
        "tier": subscription.tier or "?",
        "left": number_format(left, force_grouping=True),
        "limit": number_format(limit, force_grouping=True),
        "until": until,
    }
    if left <= 0:
        return Finding(
            Status.WARN,
            detail,
            _(
                "Lines are spoken by <Say> until the characters come back: upgrade the plan "
                "or allow usage-based billing at ElevenLabs."
            ),
        )
    if left < limit * LOW_CHARACTERS_SHARE:
        return Finding(
            Status.WARN,
            detail,
            _("Few characters are left: upgrade the plan before a large campaign."),
        )
    return Finding(Status.OK, detail)


@_check(gettext_noop("ElevenLabs default voice"))
def check_default_voice(*, timeout: float) -> Finding:
    """The default voice of campaigns (the one chosen on the Voices page, else the one
    ELEVENLABS_DEFAULT_VOICE names) is a voice ElevenLabs has."""
    if not speech.is_configured():
        return Finding(Status.SKIP, _("No ELEVENLABS_API_KEY (see the line above)."))
    setting = settings.ELEVENLABS_DEFAULT_VOICE
    try:
        voice = voice_services.resolve_default_voice()
    except DatabaseError as exc:
        return Finding(
            Status.SKIP,
            _("The voice catalogue could not be read: %(error)s") % {"error": exc},
        )
    voice_id = voice.provider_voice_id if voice is not None else voice_services.default_voice_id()
    if not voice_id:
        return Finding(
            Status.FAIL,
            _("ELEVENLABS_DEFAULT_VOICE is “%(value)s”, which names no voice of the catalogue.")
            % {"value": setting},
            _(
                "Sync the voices (Voices page in the admin) or set ELEVENLABS_DEFAULT_VOICE to "
                "a voice id; campaigns without a voice of their own cannot start."
            ),
        )
    try:
        found = speech.get_voice(voice_id=voice_id, deadline=time.monotonic() + timeout)
    except speech.SpeechRejected as exc:
        if exc.status_code == 404:
            return Finding(
                Status.FAIL,
                _("ElevenLabs has no voice %(id)s (from %(source)s).")
                % {"id": voice_id, "source": _voice_source(voice, setting)},
                _(
                    "Choose another default voice: ELEVENLABS_DEFAULT_VOICE, or the Voices "
                    "page in the admin."
                ),
            )
        if exc.is_missing_permission:
            return Finding(
                Status.FAIL,
                _("The key may not read voices: %(message)s") % {"message": exc.provider_message},
                _(
                    "Give the key the Voices read permission (ElevenLabs, API keys): the "
                    "voice sync needs it too."
                ),
            )
        return _elevenlabs_refused(exc)
    except speech.SpeechUnavailable as exc:
        return _elevenlabs_unavailable(exc)
    return Finding(
        Status.OK,
        _("%(name)s (%(id)s), from %(source)s.")
        % {"name": found.name, "id": found.voice_id, "source": _voice_source(voice, setting)},
    )


def _elevenlabs_refused(exc: speech.SpeechRejected) -> Finding:
    if exc.status_code == 401:
        return Finding(
            Status.FAIL,
            _("ElevenLabs refused the key: %(message)s") % {"message": exc.provider_message},
            _("Set ELEVENLABS_API_KEY to a key of your ElevenLabs account (API keys)."),
        )
    return Finding(
        Status.FAIL,
        _("ElevenLabs refused the request (HTTP %(status)s): %(message)s")
        % {"status": exc.status_code, "message": exc.provider_message},
        _("Check ELEVENLABS_API_KEY and ELEVENLABS_BASE_URL (%(url)s).")
        % {"url": settings.ELEVENLABS_BASE_URL},
    )


def _elevenlabs_unavailable(exc: speech.SpeechUnavailable) -> Finding:
    return Finding(
        Status.FAIL,
        _("ElevenLabs did not answer: %(error)s") % {"error": exc},
        _(
            "Run the preflight again; if it persists, check ELEVENLABS_BASE_URL (%(url)s) and "
            "status.elevenlabs.io."
        )
        % {"url": settings.ELEVENLABS_BASE_URL},
    )


def _voice_source(voice: Any, setting: str) -> str:
    if voice is not None and voice.is_default:
        return _("the default chosen on the Voices page")
    return f"ELEVENLABS_DEFAULT_VOICE={setting}"
