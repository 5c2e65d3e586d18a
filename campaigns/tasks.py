"""Campaign tasks: thin, they take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from campaigns.models import Campaign
from campaigns.prerendering import prerender_campaign_speech, prerender_upcoming_speech


@shared_task(acks_late=True)
def prerender_campaign_speech_task(campaign_id: int) -> dict[str, int]:
    """Voice the sentences a started campaign says to everyone (safe to run twice)."""
    campaign = Campaign.objects.select_related("template__partner", "voice").get(pk=campaign_id)
    result = prerender_campaign_speech(campaign=campaign)
    return {"ready": result.ready, "failed": result.failed}


@shared_task
def prerender_upcoming_speech_task() -> dict[str, int]:
    """Beat tick: voice the lines of the next contacts of every running campaign."""
    totals = {"ready": 0, "failed": 0, "skipped": 0}
    for campaign in Campaign.objects.running().select_related("template__partner", "voice"):
        result = prerender_upcoming_speech(campaign=campaign)
        totals["ready"] += result.ready
        totals["failed"] += result.failed
        totals["skipped"] += len(result.skipped)
    return totals


@shared_task
def advance_campaigns_task() -> dict[str, int]:
    """Beat tick: start scheduled campaigns whose time has come, complete finished ones."""
    # services queue this module's tasks, so this module imports them late.
    from campaigns.services import advance_campaigns

    return advance_campaigns()
