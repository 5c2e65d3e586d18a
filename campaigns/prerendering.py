"""Voicing a campaign's lines ahead of its calls, so answering never waits for synthesis.

Lines are voiced sentence by sentence (templates.rendering.sentences): the sentences that
are the same for every contact when the campaign starts, the ones that depend on the
contact for the next contacts in the queue, before their calls are placed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Contact
from templates.rendering import (
    MissingVariable,
    contact_context,
    contact_independent_sentences,
    contact_sentences,
)
from voices import speech
from voices.clips import ClipFailed, render_clip
from voices.models import Voice
from voices.services import voice_for_campaign

logger = logging.getLogger(__name__)

# How many of a running campaign's next contacts have their lines voiced ahead.
CONTACTS_AHEAD = 50


@dataclass
class PrerenderResult:
    """What one pass voiced: sentences ready, sentences that failed, contacts skipped."""

    ready: int = 0
    failed: int = 0
    skipped: dict[int, str] = field(default_factory=dict)


def prerender_campaign_speech(*, campaign: Campaign) -> PrerenderResult:
    """Voice every sentence of the campaign's template that is the same for all contacts."""
    result = PrerenderResult()
    voice = voice_for_campaign(campaign=campaign)
    if campaign.template is None or voice is None or not speech.is_configured():
        return result  # nothing to voice: calls will use <Say>
    lines = contact_independent_sentences(template=campaign.template, campaign_name=campaign.name)
    _voice(lines, voice=voice, result=result)
    return result


def prerender_contact_speech(*, campaign: Campaign, contacts: Iterable[Contact]) -> PrerenderResult:
    """Voice the sentences that depend on each of ``contacts``.

    A contact that lacks a variable its lines need is skipped with the reason (its call
    will be refused for the same reason); the others go on.
    """
    result = PrerenderResult()
    voice = voice_for_campaign(campaign=campaign)
    if campaign.template is None or voice is None or not speech.is_configured():
        return result
    for contact in contacts:
        try:
            lines = contact_sentences(
                template=campaign.template, context=contact_context(contact=contact)
            )
        except MissingVariable as exc:
            result.skipped[contact.pk] = str(exc)
            continue
        _voice(lines, voice=voice, result=result)
    return result


def prerender_upcoming_speech(
    *, campaign: Campaign, limit: int = CONTACTS_AHEAD
) -> PrerenderResult:
    """Voice the lines of the next ``limit`` contacts the dialer will call."""
    upcoming = (
        campaign.contacts.due(timezone.now())
        .select_related("campaign__partner")
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")[:limit]
    )
    return prerender_contact_speech(campaign=campaign, contacts=upcoming)


def _voice(lines: Iterable[str], *, voice: Voice, result: PrerenderResult) -> None:
    for line in lines:
        try:
            render_clip(text=line, voice=voice)
        except ClipFailed as exc:
            # The call falls back to <Say> for this line; the next pass tries again.
            logger.warning("could not voice %r ahead: %s", line[:40], exc.reason)
            result.failed += 1
        else:
            result.ready += 1
