"""Writes on calls."""

from __future__ import annotations

from django.db.models import F

from calls.models import Call
from voices.clips import Speech, speech_for_line
from voices.services import voice_for_campaign


def record_speech_fallback(*, call: Call) -> None:
    """Count on ``call`` one line spoken with <Say> instead of its rendered clip."""
    Call.objects.filter(pk=call.pk).update(speech_fallbacks=F("speech_fallbacks") + 1)
    call.refresh_from_db(fields=["speech_fallbacks"])


def speech_for_call(*, call: Call, text: str) -> Speech:
    """How to speak ``text`` on ``call``: its campaign's voice, its template's language.

    A line that falls back to <Say> is counted on the call, where staff see it.
    """
    campaign = call.campaign
    speech = speech_for_line(
        text=text,
        voice=voice_for_campaign(campaign=campaign),
        language=campaign.template.language,
    )
    if speech.is_fallback:
        record_speech_fallback(call=call)
    return speech
