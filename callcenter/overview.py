"""The admin's home page: what is going on now and what needs attention.

Running and paused campaigns with their progress (calls.reports.stats), today's calls,
answers, opt-outs and cost (counted as the campaign dashboard counts them), and a list of
what needs a person: campaigns the platform paused for a fault, a default voice that
resolves to nothing, webhook endpoints whose deliveries fail, beat or the worker silent.

Each part is counted by the database in a fixed number of aggregate queries, whatever the
number of campaigns, calls or deliveries, and only for staff allowed to read it; every
link points at a page the user may open.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, PermissionsMixin
from django.db.models import Case, Count, Max, OuterRef, Q, Subquery, Value, When
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import urlencode
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from callcenter.health import heartbeat_at
from calls.costs import calls_cost
from calls.models import LIVE_STATUSES, Call, placed_calls
from calls.reports.dashboard import cost_label, money
from calls.reports.stats import answered_calls, ended_calls, with_contacts_done
from campaigns.models import Campaign, WebhookDelivery
from campaigns.reports import percent, progress_label
from voices.services import default_voice_problem

# Campaigns listed on the page (and campaigns or endpoints in the attention list); the
# rest are a link away.
SHOWN = 20
# Beat's heartbeat tick runs every 30 s: four missed ticks mean beat or the worker is
# down, not merely busy.
HEARTBEAT_SILENT_AFTER = datetime.timedelta(minutes=2)
# Failed deliveries are of the events of this long ago at most: a delivery is given up
# 24 hours after its event (campaigns.deliveries.RETRY_WINDOW), then shown for a day.
DELIVERIES_WINDOW = datetime.timedelta(hours=48)
# How often an open page refreshes (seconds).
REFRESH_SECONDS = 30
SHOWN_STATES = (Campaign.State.RUNNING, Campaign.State.PAUSED)

# Whoever asks: a staff user (every user model here has permissions) or nobody.
User = PermissionsMixin | AnonymousUser


@dataclasses.dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclasses.dataclass(frozen=True)
class CampaignRow:
    """A running or paused campaign: its progress and calls going on now."""

    pk: int
    name: str
    partner: str
    state: str
    state_label: str
    state_reason: str
    done: int
    total: int
    live_calls: int
    url: str

    @property
    def percent_done(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def progress_label(self) -> str:
        return progress_label(self.done, self.total)


@dataclasses.dataclass(frozen=True)
class Campaigns:
    rows: list[CampaignRow]
    running: int
    paused: int
    # The campaign list, filtered to the running and to the paused ones.
    running_url: str
    paused_url: str

    @property
    def more(self) -> int:
        """How many running or paused campaigns the page leaves out."""
        return self.running + self.paused - len(self.rows)


@dataclasses.dataclass(frozen=True)
class Today:
    """Calls placed today (from midnight in TIME_ZONE) and calls going on now."""

    date: datetime.date
    live_calls: int
    calls: int
    answered: int
    answer_rate: str
    opted_out: int
    cost_total: str
    cost_detail: str
    cost_pending: bool
    live_url: str
    calls_url: str
    opted_out_url: str


@dataclasses.dataclass(frozen=True)
class Attention:
    """Something a person needs to look at: what, why, and where to act."""

    key: str
    title: str
    detail: str
    links: list[Link]


@dataclasses.dataclass(frozen=True)
class Overview:
    campaigns: Campaigns | None  # None: the user may not read campaigns
    today: Today | None  # None: the user may not read calls
    attention: list[Attention]
    refresh_seconds: int
    updated_at: datetime.datetime


def operations_overview(*, user: User, now: datetime.datetime | None = None) -> Overview:
    """What ``user`` may see of the operations now, in a fixed number of queries."""
    now = now or timezone.now()
    may = user.has_perm
    attention = []
    campaigns = None
    if may("campaigns.view_campaign"):
        campaigns = _campaigns()
        attention.extend(_paused_by_a_fault())
    if may("campaigns.view_campaign") or may("voices.view_voice"):
        attention.extend(_default_voice(user))
    if may("campaigns.view_webhookdelivery"):
        attention.extend(_failing_endpoints(user, now))
    attention.extend(_heartbeat(now))
    return Overview(
        campaigns=campaigns,
        today=_today(now) if may("calls.view_call") else None,
        attention=attention,
        refresh_seconds=REFRESH_SECONDS,
        updated_at=timezone.localtime(now),
    )


# --- Campaigns ----------------------------------------------------------------------------


def _campaign_url(pk: int) -> str:
    return reverse("admin:campaigns_campaign_change", args=[pk])


def _campaign_list_url(**filters: str) -> str:
    return f"{reverse('admin:campaigns_campaign_changelist')}?{urlencode(filters)}"


def _campaigns() -> Campaigns:
    """Running campaigns first, then paused ones, each by name: two queries."""
    # Progress without the answer rate, which reads every call of a campaign (the
    # campaign list shows it).
    shown: Any = with_contacts_done(  # rows with the counts annotated
        Campaign.objects.filter(state__in=SHOWN_STATES).select_related("partner")
    ).order_by(
        Case(When(state=Campaign.State.RUNNING, then=Value(0)), default=Value(1)), "name", "pk"
    )[:SHOWN]
    counts = dict(
        Campaign.objects.filter(state__in=SHOWN_STATES)
        .order_by()
        .values("state")
        .annotate(count=Count("pk"))
        .values_list("state", "count")
    )
    return Campaigns(
        rows=[
            CampaignRow(
                pk=campaign.pk,
                name=campaign.name,
                partner=campaign.partner.name,
                state=campaign.state,
                state_label=campaign.get_state_display(),
                state_reason=campaign.state_reason,
                done=campaign.contacts_done,
                total=campaign.contacts_total,
                live_calls=campaign.live_calls,
                url=_campaign_url(campaign.pk),
            )
            for campaign in shown
        ],
        running=counts.get(Campaign.State.RUNNING, 0),
        paused=counts.get(Campaign.State.PAUSED, 0),
        running_url=_campaign_list_url(state__exact=Campaign.State.RUNNING),
        paused_url=_campaign_list_url(state__exact=Campaign.State.PAUSED),
    )


def _paused_by_a_fault() -> list[Attention]:
    """Campaigns the platform paused, with its reason (calls.dialing pauses a campaign
    when Twilio refuses the credentials or the caller number); a pause by a person has
    none. One query."""
    paused = (
        Campaign.objects.filter(state=Campaign.State.PAUSED)
        .exclude(state_reason="")
        .select_related("partner")
        .order_by("-state_changed_at", "pk")[:SHOWN]
    )
    return [
        Attention(
            key=f"campaign-paused-{campaign.pk}",
            title=_("“%(name)s” (%(partner)s) was paused by a fault")
            % {"name": campaign.name, "partner": campaign.partner.name},
            detail=(
                _("Paused %(when)s: %(reason)s")
                % {"when": _when(campaign.state_changed_at), "reason": campaign.state_reason}
                if campaign.state_changed_at
                else campaign.state_reason
            ),
            links=[Link(_("Open the campaign"), _campaign_url(campaign.pk))],
        )
        for campaign in paused
    ]


# --- Today --------------------------------------------------------------------------------


def _today(now: datetime.datetime) -> Today:
    """Today's calls in TIME_ZONE (placed ones: a call released before Twilio rang it is
    no attempt), counted as a campaign's dashboard counts them, and the calls going on
    now. Four queries: the figures in one, the cost in three."""
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    day = now.astimezone(zone).date()
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=zone)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, zone)
    today = Q(created_at__gte=start, created_at__lt=end)
    live = Q(status__in=LIVE_STATUSES)
    # One pass over today's calls and the live ones, each found by an index (created_at's,
    # and the partial one of live calls, call_one_live_call_per_contact).
    figures = Call.objects.filter(today | live).aggregate(
        live=Count("pk", filter=live),
        calls=Count("pk", filter=today & placed_calls()),
        answered=Count("pk", filter=today & answered_calls()),
        ended=Count("pk", filter=today & ended_calls()),
        opted_out=Count("pk", filter=today & Q(flags__opted_out=True)),
    )
    cost = calls_cost(calls=Call.objects.filter(today))
    calls_url = reverse("admin:calls_call_changelist")
    day_filter: dict[str, str | int] = {
        "created_at__day": day.day,
        "created_at__month": day.month,
        "created_at__year": day.year,
    }
    opted_out_filter = {"outcome": "opted_out", **day_filter}
    return Today(
        date=day,
        live_calls=figures["live"],
        calls=figures["calls"],
        answered=figures["answered"],
        answer_rate=percent(figures["answered"] / figures["ended"] if figures["ended"] else None),
        opted_out=figures["opted_out"],
        cost_total=f"{money(cost.total)} {cost.currency}",
        cost_detail=cost_label(cost),
        cost_pending=not cost.is_final,
        live_url=f"{calls_url}?{urlencode({'status__in': ','.join(LIVE_STATUSES)})}",
        calls_url=f"{calls_url}?{urlencode(day_filter)}",
        opted_out_url=f"{calls_url}?{urlencode(opted_out_filter)}",
    )


# --- Attention ----------------------------------------------------------------------------


def _default_voice(user: User) -> list[Attention]:
    """The default voice resolving to nothing (the warning /health and the campaigns' and
    voices' pages give): campaigns without a voice of their own cannot start."""
    problem = default_voice_problem()
    if not problem:
        return []
    links = []
    if user.has_perm("voices.view_voice"):
        links.append(Link(_("Voices"), reverse("admin:voices_voice_changelist")))
    return [
        Attention(
            key="default-voice",
            title=_("The default voice does not resolve"),
            detail=problem,
            links=links,
        )
    ]


def _failing_endpoints(user: User, now: datetime.datetime) -> list[Attention]:
    """Webhook endpoints with deliveries of the last 48 hours that failed, or whose last
    attempt failed and that wait for a retry: how many, and the latest error. One query."""
    failing = Q(state=WebhookDelivery.State.FAILED) | (
        Q(state=WebhookDelivery.State.PENDING, attempts__gt=0) & ~Q(last_error="")
    )
    recent = WebhookDelivery.objects.filter(created_at__gte=now - DELIVERIES_WINDOW).filter(failing)
    latest = recent.filter(endpoint_id=OuterRef("endpoint_id")).order_by("-updated_at", "-pk")
    rows = (
        recent.order_by()
        .values("endpoint_id", "endpoint__url", "endpoint__partner__name", "endpoint__is_active")
        .annotate(
            failed=Count("pk", filter=Q(state=WebhookDelivery.State.FAILED)),
            retrying=Count("pk", filter=Q(state=WebhookDelivery.State.PENDING)),
            last_at=Max("updated_at"),
            last_error=Subquery(latest.values("last_error")[:1]),
            total=Count("pk"),
        )
        .order_by("-total", "endpoint_id")[:SHOWN]
    )
    may_open_endpoints = user.has_perm("campaigns.view_webhookendpoint")
    deliveries_url = reverse("admin:campaigns_webhookdelivery_changelist")
    items = []
    for row in rows:
        counts = []  # sentences
        if row["failed"]:
            counts.append(
                ngettext(
                    "%(count)d delivery failed for good.",
                    "%(count)d deliveries failed for good.",
                    row["failed"],
                )
                % {"count": row["failed"]}
            )
        if row["retrying"]:
            counts.append(
                ngettext(
                    "%(count)d waits for a retry.",
                    "%(count)d wait for a retry.",
                    row["retrying"],
                )
                % {"count": row["retrying"]}
            )
        detail = [
            *counts,
            _("Last error, %(when)s: %(error)s")
            % {"when": _when(row["last_at"]), "error": row["last_error"] or "—"},
        ]
        if not row["endpoint__is_active"]:
            detail.insert(0, _("The endpoint is disabled."))
        links = [
            Link(
                _("Its deliveries"),
                f"{deliveries_url}?{urlencode({'endpoint__id__exact': row['endpoint_id']})}",
            )
        ]
        if may_open_endpoints:
            links.append(
                Link(
                    _("The endpoint"),
                    reverse("admin:campaigns_webhookendpoint_change", args=[row["endpoint_id"]]),
                )
            )
        items.append(
            Attention(
                key=f"webhook-endpoint-{row['endpoint_id']}",
                title=_("Webhook deliveries to %(url)s (%(partner)s) are failing")
                % {"url": row["endpoint__url"], "partner": row["endpoint__partner__name"]},
                detail=" ".join(detail),
                links=links,
            )
        )
    return items


def _heartbeat(now: datetime.datetime) -> list[Attention]:
    """Beat or the worker silent: no heartbeat tick run for two minutes, or none ever, or
    the cache where the tick records it (Redis, the broker's server too) unreadable."""
    try:
        at = heartbeat_at()
    except Exception:  # noqa: BLE001 - any failure of the cache means it cannot be read
        at, unreadable = None, True
    else:
        unreadable = False
    if at is not None and now - at <= HEARTBEAT_SILENT_AFTER:
        return []
    if unreadable:
        title = _("The cache cannot be read: whether beat and the worker run is unknown")
    elif at is None:
        title = _("No worker has run beat's heartbeat tick")
    else:
        title = _("Beat or the worker is silent: the last heartbeat was %(ago)s ago") % {
            "ago": timesince(at, now)
        }
    if settings.REDIS_URL:
        detail = _(
            "Without beat and a worker no campaign dials, and no price, retry or webhook is "
            "sent. Check that Redis, the worker and beat run (docker compose ps redis worker "
            "beat; docker compose logs worker beat); beat runs once, never more."
        )
    else:
        detail = _(
            "Without beat and a worker no campaign dials, and no price, retry or webhook is "
            "sent. On the embedded default (no REDIS_URL) make run starts both with the web "
            "server; a web server started alone (manage.py runserver) has neither."
        )
    return [
        Attention(
            key="heartbeat",
            title=title,
            detail=detail,
            links=[Link(_("Health"), reverse("health"))],
        )
    ]


def _when(moment: datetime.datetime | None) -> str:
    if moment is None:
        return "—"
    return _("on %(datetime)s") % {
        "datetime": date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")
    }
