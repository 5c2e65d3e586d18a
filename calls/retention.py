"""Retention of calls' data: each partner's transcripts, recordings and outcomes are
deleted once the call ended longer ago than its period for them (``Partner.*_retention_days``;
empty: kept until deleted); the call row, its timings, status and costs stay.

``purge_expired`` (the nightly beat task) also purges uploads (campaigns/retention.py).
Work goes in batches, each its own short transaction that locks the rows it takes with
``SKIP LOCKED`` (two runs at once share the work, and never delete a row twice) and records
``retention.purged`` in the audit trail with what it deleted, so no deletion goes unrecorded.
"""

from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from calls import recordings, telephony
from calls.models import Call, Turn
from campaigns.models import Partner
from campaigns.retention import (
    BATCH_SIZE,
    Kind,
    Purge,
    cutoff,
    partners_keeping,
    purge_uploads,
    record_purge,
)

logger = logging.getLogger(__name__)

# Recordings are deleted one request to the carrier each: fewer a transaction.
RECORDING_BATCH_SIZE = 50


def purge_expired(
    *,
    now: datetime.datetime | None = None,
    batch_size: int = BATCH_SIZE,
    recording_batch_size: int = RECORDING_BATCH_SIZE,
) -> Purge:
    """Delete every partner's expired transcripts, recordings, outcomes and uploads."""
    now = now or timezone.now()
    result = Purge()
    for partner in partners_keeping(Kind.TRANSCRIPTS):
        before = cutoff(partner, Kind.TRANSCRIPTS, now)
        while count := _purge_turns_batch(partner, before, batch_size):
            result.add(partner.pk, Kind.TRANSCRIPTS, count)
    for partner in partners_keeping(Kind.OUTCOMES):
        before = cutoff(partner, Kind.OUTCOMES, now)
        while count := _clear_outcomes_batch(partner, before, batch_size):
            result.add(partner.pk, Kind.OUTCOMES, count)
    for partner in partners_keeping(Kind.RECORDINGS):
        _purge_recordings(
            partner, cutoff(partner, Kind.RECORDINGS, now), recording_batch_size, result
        )
    purge_uploads(now=now, batch_size=batch_size, result=result)
    return result


def ended_calls(partner: Partner, before: datetime.datetime) -> QuerySet[Call]:
    """``partner``'s calls that ended before ``before``."""
    return Call.objects.filter(campaign__partner=partner, ended_at__lt=before)


def _purge_turns_batch(partner: Partner, before: datetime.datetime, size: int) -> int:
    """Delete up to ``size`` turns of calls that ended before ``before``; how many."""
    with transaction.atomic():
        ids = list(
            Turn.objects.filter(call__in=ended_calls(partner, before))
            .order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return 0
        count = Turn.objects.filter(pk__in=ids).delete()[0]
        record_purge(partner=partner, kind=Kind.TRANSCRIPTS, count=count, cutoff=before)
        return count


# A call that still holds something of what it came to.
HOLDS_OUTCOME = ~Q(answers={}) | ~Q(flags={}) | ~Q(summary="") | ~Q(dialogue={})


def _clear_outcomes_batch(partner: Partner, before: datetime.datetime, size: int) -> int:
    """Clear what up to ``size`` calls came to (answers, flags, summary, dialogue state);
    how many calls."""
    with transaction.atomic():
        ids = list(
            ended_calls(partner, before)
            .filter(HOLDS_OUTCOME)
            .order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:size]
        )
        if not ids:
            return 0
        count = Call.objects.filter(pk__in=ids).update(
            answers={}, flags={}, summary="", dialogue={}, updated_at=timezone.now()
        )
        record_purge(partner=partner, kind=Kind.OUTCOMES, count=count, cutoff=before)
        return count


def _purge_recordings(
    partner: Partner, before: datetime.datetime, size: int, result: Purge
) -> None:
    """Delete the carrier's recordings of calls that ended before ``before``. A carrier
    unavailable leaves the call's recording for the next run (counted in ``result.left``)."""
    # Calls this run is done with (a recording left for the next run, or none found at
    # the carrier), so that the next batch takes others.
    seen: list[int] = []
    while True:
        with transaction.atomic():
            calls = list(
                ended_calls(partner, before)
                .exclude(recording_sid="", recording_url="")
                .exclude(pk__in=seen)
                .order_by("pk")
                .select_for_update(skip_locked=True, of=("self",))[:size]
            )
            if not calls:
                return
            deleted = left = 0
            for call in calls:
                seen.append(call.pk)
                try:
                    deleted += recordings.delete_recording(call)
                except (recordings.RecordingUnavailable, telephony.TelephonyRejected) as error:
                    # Unreachable, or refused (credentials, say): the reference is kept and
                    # the next run tries again.
                    logger.warning("Call %s: recording not deleted, next run: %s", call.pk, error)
                    left += 1
            if deleted:
                record_purge(
                    partner=partner, kind=Kind.RECORDINGS, count=deleted, cutoff=before, left=left
                )
        result.add(partner.pk, Kind.RECORDINGS, deleted)
        result.leave(partner.pk, Kind.RECORDINGS, left)
