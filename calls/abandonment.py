"""Abandoned calls: the one definition, a campaign's rate, and what the rate sets off.

A call is abandoned (47 CFR 64.1200(a)(7), Ofcom's persistent-misuse policy) when a person
answered it live and heard nothing from us within 2 seconds of the answer: its time to
first audio (``Call.first_audio_ms``, kept on both transports) is over 2,000 ms, or it was
answered and ended without any. A person answered live when the call was answered
(Twilio's ``in-progress``, or ``completed``, which only an answered call reaches) and
answering-machine detection did not say a machine or a fax did: ``human``, ``unknown`` and
no verdict at all count as live. Calls a contact made to us are no calls of ours.

A campaign's rate is its abandoned calls over its live-answered ones, of the calls
answered within the last 30 days. After each live-answered call ends
(``check_abandonment``, from the status callback that ends it) the rate is taken again:
at 1 % the campaign's alert is raised (once), and an abandoned call that brings it to 3 %
pauses the running campaign. The rate that decides is taken over at least
ABANDONMENT_MIN_ANSWERED calls (docs/architecture.md, "Abandonment").
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from calls.models import LIVE_STATUSES, MACHINE_ANSWERS, Call, CallDirection, CallStatus
from campaigns.models import Campaign
from campaigns.reports import ABANDONMENT_ALERT_RATE as ALERT_RATE
from campaigns.reports import ABANDONMENT_PAUSE_RATE as PAUSE_RATE
from campaigns.reports import ABANDONMENT_WINDOW_DAYS as WINDOW_DAYS
from campaigns.reports import Abandonment
from campaigns.services import CampaignStateError, pause_campaign

logger = logging.getLogger(__name__)

# The rule's own figure: not a setting.
FIRST_AUDIO_LIMIT_MS = 2_000


def answer_moment() -> Coalesce:
    """When a call was answered: its answer time, or when it was made for a completed call
    whose ``answered`` callback never came. The call index ``call_campaign_answer_idx``
    is on this very expression."""
    return Coalesce(F("answered_at"), F("created_at"))


def live_answered() -> Q:
    """Calls of ours a person answered live (not a machine, not a fax)."""
    return (
        Q(direction=CallDirection.OUTBOUND)
        & (Q(answered_at__isnull=False) | Q(status=CallStatus.COMPLETED))
        & ~Q(answered_by__in=MACHINE_ANSWERS)
    )


def abandoned() -> Q:
    """Live-answered calls on which the callee heard nothing from us within 2 s: first
    audio after 2,000 ms, or none at all on a call that has ended."""
    return live_answered() & (
        Q(first_audio_ms__gt=FIRST_AUDIO_LIMIT_MS)
        | (Q(first_audio_ms__isnull=True) & ~Q(status__in=LIVE_STATUSES))
    )


def answered_within_window(
    calls: QuerySet[Call], *, now: datetime.datetime | None = None
) -> QuerySet[Call]:
    """The live-answered ``calls`` answered within the last WINDOW_DAYS days."""
    since = (now or timezone.now()) - datetime.timedelta(days=WINDOW_DAYS)
    return (
        calls.alias(answer_moment=answer_moment())
        .filter(answer_moment__gte=since)
        .filter(live_answered())
    )


def campaign_abandonment(
    *, campaign: Campaign, now: datetime.datetime | None = None
) -> Abandonment:
    """``campaign``'s abandoned and live-answered calls over the last 30 days: one
    aggregate query."""
    if campaign.pk is None:
        return Abandonment(abandoned=0, answered=0, window_days=WINDOW_DAYS)
    figures = answered_within_window(
        Call.objects.filter(campaign_id=campaign.pk).order_by(), now=now
    ).aggregate(answered=Count("pk"), abandoned=Count("pk", filter=abandoned()))
    return Abandonment(
        abandoned=figures["abandoned"], answered=figures["answered"], window_days=WINDOW_DAYS
    )


def with_abandonment(
    campaigns: QuerySet[Campaign], *, now: datetime.datetime | None = None
) -> QuerySet[Campaign]:
    """``campaigns`` each with ``abandoned_calls`` and ``live_answered_calls`` over the last
    30 days, counted by the database in the query that lists them."""
    window = answered_within_window(Call.objects.filter(campaign=OuterRef("pk")), now=now)
    return campaigns.annotate(
        live_answered_calls=_count(window),
        abandoned_calls=_count(window.filter(abandoned())),
    )


def abandonment_of(
    campaign_ids: Iterable[int], *, now: datetime.datetime | None = None
) -> dict[int, Abandonment]:
    """The abandonment of each campaign of ``campaign_ids`` (a page of them), by id, in one
    aggregate query: what ``with_abandonment`` counts, reading each call once rather than
    once per count (the API's campaign list; the admin's sorts by the annotation)."""
    ids = list(campaign_ids)
    figures = dict.fromkeys(ids, Abandonment(abandoned=0, answered=0, window_days=WINDOW_DAYS))
    if not ids:
        return figures
    rows = (
        answered_within_window(Call.objects.filter(campaign_id__in=ids), now=now)
        .order_by()
        .values("campaign_id")
        .annotate(answered=Count("pk"), abandoned=Count("pk", filter=abandoned()))
    )
    for row in rows:
        figures[row["campaign_id"]] = Abandonment(
            abandoned=row["abandoned"], answered=row["answered"], window_days=WINDOW_DAYS
        )
    return figures


def _count(calls: QuerySet[Call]) -> Coalesce:
    counted = calls.order_by().values("campaign").annotate(count=Count("pk")).values("count")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def abandonment_by_campaign(*, now: datetime.datetime | None = None) -> dict[str, float]:
    """Each running campaign's rate now (0 without live-answered calls), by campaign id:
    the gauge callcenter_campaign_abandonment_ratio (callcenter/metrics.py), in one
    aggregate query."""
    rows = (
        answered_within_window(Call.objects.filter(campaign__state=Campaign.State.RUNNING), now=now)
        .order_by()
        .values("campaign_id")
        .annotate(answered=Count("pk"), abandoned=Count("pk", filter=abandoned()))
    )
    rates = {
        str(pk): 0.0
        for pk in Campaign.objects.filter(state=Campaign.State.RUNNING).values_list("pk", flat=True)
    }
    for row in rows:
        rates[str(row["campaign_id"])] = row["abandoned"] / row["answered"]
    return rates


def check_abandonment(*, call: Call, now: datetime.datetime | None = None) -> None:
    """``call`` has just ended: when a person answered it live, take its campaign's rate
    again; at 1 % raise the campaign's alert (once: logged and audited); when ``call``
    itself was abandoned and the rate is at 3 %, pause the running campaign with the
    figures as its reason (audited). Run inside the transaction that ends the call.

    Only an abandoned call pauses: once staff resume a campaign whose rate is still at
    3 %, its good calls bring the rate down and the next abandoned one pauses it again.
    """
    verdict = (
        Call.objects.filter(pk=call.pk)
        .filter(live_answered())
        .aggregate(live=Count("pk"), abandoned=Count("pk", filter=abandoned()))
    )
    if not verdict["live"]:
        return
    now = now or timezone.now()
    campaign = Campaign.objects.get(pk=call.campaign_id)
    figures = campaign_abandonment(campaign=campaign, now=now)
    rate = figures.judged_rate
    if rate >= ALERT_RATE:
        _raise_alert(campaign=campaign, figures=figures, now=now)
    if verdict["abandoned"] and rate >= PAUSE_RATE and campaign.state == Campaign.State.RUNNING:
        _pause(campaign=campaign, figures=figures, call=call)


def _details(figures: Abandonment) -> dict[str, object]:
    return {
        "rate": round(figures.rate or 0.0, 6),
        "abandoned": figures.abandoned,
        "answered": figures.answered,
        "window_days": figures.window_days,
        "min_answered": settings.ABANDONMENT_MIN_ANSWERED,
    }


def _raise_alert(*, campaign: Campaign, figures: Abandonment, now: datetime.datetime) -> None:
    # A compare-and-set: of two calls ending together, one raises it.
    if not Campaign.objects.filter(pk=campaign.pk, abandonment_alerted_at__isnull=True).update(
        abandonment_alerted_at=now
    ):
        return
    campaign.abandonment_alerted_at = now
    logger.warning(
        "Campaign %s abandoned %s of %s live-answered calls in %s days: at the 1%% alert.",
        campaign.pk,
        figures.abandoned,
        figures.answered,
        figures.window_days,
    )
    audit.record(
        audit.Action.ABANDONMENT_ALERT,
        partner_id=campaign.partner_id,
        object_type="campaigns.campaign",
        object_id=campaign.pk,
        details=_details(figures),
    )


def _pause(*, campaign: Campaign, figures: Abandonment, call: Call) -> None:
    reason = _(
        "Paused automatically: %(figures)s were abandoned (no audio within 2 seconds of "
        "the answer), at or above the 3%% limit. Resume it once the cause is fixed."
    ) % {"figures": figures.label()}
    try:
        # A savepoint: a campaign moved meanwhile leaves the call's own writes whole.
        with transaction.atomic():
            pause_campaign(campaign=campaign, reason=reason)
            audit.record(
                audit.Action.CAMPAIGN_AUTO_PAUSED,
                partner_id=campaign.partner_id,
                object_type="campaigns.campaign",
                object_id=campaign.pk,
                details={**_details(figures), "reason": "abandonment", "call_id": call.pk},
            )
    except CampaignStateError as exc:
        logger.info("Campaign %s not paused for abandonment: %s", campaign.pk, exc)
        return
    logger.warning(
        "Campaign %s paused: %s of %s live-answered calls abandoned in %s days.",
        campaign.pk,
        figures.abandoned,
        figures.answered,
        figures.window_days,
    )
