"""Campaign tasks: thin, they take ids and call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from callcenter import media
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


# Its hard time limit stays under campaigns.deliveries.CLAIM_LEASE (5 minutes): an attempt
# is claimed again only once the worker that claimed it can no longer be sending it.
@shared_task(acks_late=True, time_limit=240, soft_time_limit=200)
def deliver_webhook_task(delivery_id: int) -> str:
    """Make one attempt at a partner webhook delivery, if it is due (safe to run twice)."""
    # deliveries queue this task, so this module imports them late.
    from campaigns.deliveries import deliver

    return deliver(delivery_id=delivery_id)


# A tick left waiting expires: the next one (every 30 s) queues the same deliveries.
@shared_task(expires=30)
def retry_webhook_deliveries_task() -> int:
    """Beat tick: queue the webhook deliveries due for an attempt (retries, lost tasks)."""
    from campaigns.deliveries import queue_due_deliveries

    return queue_due_deliveries()


@shared_task(
    acks_late=True,
    # A database or media bucket that went away mid-import: run again once the claim is
    # stale, when the run starts over and the rows already saved merge.
    autoretry_for=(OperationalError, InterfaceError, *media.BUCKET_ERRORS),
    max_retries=3,
    default_retry_delay=11 * 60,  # past campaigns.imports.STALE_AFTER
)
def import_contacts_task(contact_import_id: int) -> dict[str, Any]:
    """Import an uploaded contact file (safe to run twice: the import is claimed first)."""
    from campaigns.imports import run_import

    contact_import = run_import(contact_import_id=contact_import_id)
    return {
        "state": contact_import.state,
        "rows": contact_import.processed_rows,
        "created": contact_import.created_count,
        "merged": contact_import.merged_count,
        "rejected": contact_import.error_count,
    }


@shared_task(
    acks_late=True,
    # A database or media bucket that went away mid-import: run again once the claim is
    # stale, when the copy's rows are deleted and the file loaded again from the start.
    autoretry_for=(OperationalError, InterfaceError, *media.BUCKET_ERRORS),
    max_retries=3,
    default_retry_delay=11 * 60,  # past campaigns.suppression.loading.STALE_AFTER
)
def import_suppression_copy_task(copy_id: int) -> dict[str, Any]:
    """Import an uploaded national suppression list copy (safe to run twice: claimed first)."""
    from campaigns.suppression import run_copy_import

    copy = run_copy_import(copy_id=copy_id)
    return {
        "state": copy.state,
        "lines": copy.lines_read,
        "entries": copy.entry_count,
        "bad": copy.bad_lines,
    }
