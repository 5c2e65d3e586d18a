"""What a campaign's page in the staff console shows above its settings: its figures now
(calls.reports.stats), charts drawn from its calls, and the pacing limits that apply to it.

The page is campaigns' admin; this counts calls, so it lives in calls and reaches the page
through campaigns.reports (registered in calls/apps.py)."""

from __future__ import annotations

import dataclasses
import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.template.defaultfilters import floatformat
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from calls.costs import Cost
from calls.dispatcher import DISPATCH_INTERVAL_SECONDS
from calls.models import LIVE_STATUSES, CallStatus
from calls.pacing import BACKOFF_CAP, BACKOFF_FIRST, backing_off
from calls.reports.stats import (
    FINISHED_CONTACT_STATES,
    CampaignStats,
    Hour,
    calls_by_hour,
    campaign_stats,
)
from campaigns import charts
from campaigns.models import Campaign, Contact
from campaigns.reports import percent, progress_label

# The time charts cover this many hours, up to now (or to the last call of a campaign
# that no longer calls).
CHART_HOURS = 24
# Every how many hours the time charts label their axis.
CHART_LABEL_EVERY = 3
# How often an open page refreshes its figures (seconds) while the campaign may call.
REFRESH_SECONDS = 10
# States in which the figures may still move, so that the page refreshes them.
ACTIVE_STATES = (Campaign.State.SCHEDULED, Campaign.State.RUNNING, Campaign.State.PAUSED)


@dataclasses.dataclass(frozen=True)
class Count:
    key: str
    label: str
    count: int


@dataclasses.dataclass(frozen=True)
class PacingLimit:
    """One pacing limit as it applies: the campaign's setting, the platform's cap (empty:
    none), the limit in effect and which of the two sets it."""

    key: str
    name: str
    configured: str
    cap: str
    effective: str
    binds: str


@dataclasses.dataclass(frozen=True)
class Dashboard:
    stats: CampaignStats
    contacts: list[Count]
    calls: list[Count]
    done: int
    live_calls: int
    answer_rate: str
    average_duration: str
    cost: str
    charts: list[charts.Chart]
    pacing: list[PacingLimit]
    pacing_notes: list[str]
    held_back: bool
    refresh_seconds: int
    updated_at: datetime.datetime

    @property
    def total(self) -> int:
        return self.stats.contacts

    @property
    def percent_done(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def progress_label(self) -> str:
        return progress_label(self.done, self.total)


def campaign_dashboard(*, campaign: Campaign, now: datetime.datetime | None = None) -> Dashboard:
    """Everything the page shows about ``campaign`` now, in a handful of queries."""
    now = now or timezone.now()
    stats = campaign_stats(campaign=campaign)
    live = sum(stats.calls_by_status[status] for status in LIVE_STATUSES)
    hours = calls_by_hour(campaign=campaign, until=_chart_end(campaign, now), hours=CHART_HOURS)
    return Dashboard(
        stats=stats,
        contacts=[
            Count(key=state, label=str(Contact.State(state).label), count=count)
            for state, count in stats.contacts_by_state.items()
        ],
        calls=[
            Count(key=status, label=str(CallStatus(status).label), count=count)
            for status, count in stats.calls_by_status.items()
        ],
        done=sum(stats.contacts_by_state[state] for state in FINISHED_CONTACT_STATES),
        live_calls=live,
        answer_rate=percent(stats.answer_rate),
        average_duration=duration(stats.average_answered_seconds),
        cost=cost_label(stats.cost),
        charts=[
            _calls_per_hour_chart(hours),
            _outcomes_chart(stats),
            _answer_rate_chart(hours),
        ],
        pacing=pacing_limits(campaign=campaign, stats=stats),
        pacing_notes=pacing_notes(campaign=campaign, stats=stats),
        # After Twilio refused a call for the account's concurrency limit (calls.dialing).
        held_back=bool(backing_off([campaign.pk])),
        refresh_seconds=REFRESH_SECONDS if campaign.state in ACTIVE_STATES or live else 0,
        updated_at=timezone.localtime(now),
    )


def cost_label(cost: Cost) -> str:
    """The cost so far, with its parts, and what it does not count yet."""
    label = _(
        "%(total)s %(currency)s (telephony %(telephony)s, speech %(speech)s, model %(model)s)"
    ) % {
        "total": money(cost.total),
        "currency": cost.currency,
        "telephony": money(cost.telephony),
        "speech": money(cost.speech),
        "model": money(cost.model),
    }
    notes = []
    if cost.calls_pending:
        notes.append(
            ngettext(
                "telephony price pending for %(count)d call",
                "telephony price pending for %(count)d calls",
                cost.calls_pending,
            )
            % {"count": cost.calls_pending}
        )
    if cost.unpriced:
        notes.append(_("not counted: %(what)s") % {"what": ", ".join(cost.unpriced)})
    return "; ".join([label, *notes])


def duration(seconds: float | None) -> str:
    """Minutes and seconds (1:05); a dash for none."""
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def money(amount: Decimal) -> str:
    # Carriers charge fractions of a cent per call: a small sum keeps its digits.
    return floatformat(amount, 2) if abs(amount) >= 1 else number(amount, places=4)


def number(value: Decimal | float, *, places: int = 2) -> str:
    """``value`` as people write it, localised: 1, 0.5, 0.013, no trailing zeros."""
    rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return number_format(rounded.normalize())


def _chart_end(campaign: Campaign, now: datetime.datetime) -> datetime.datetime:
    """Now for a campaign that may still call; else its last call, so that a finished
    campaign's charts show its last day of calls, not an empty one."""
    if campaign.state in ACTIVE_STATES:
        return now
    last = campaign.calls.order_by("-created_at").values_list("created_at", flat=True).first()
    return last or now


def _hour(start: datetime.datetime) -> str:
    return date_format(start, "H:i")


def _calls_per_hour_chart(hours: list[Hour]) -> charts.Chart:
    total = sum(hour.calls for hour in hours)
    busiest = max((hour.calls for hour in hours), default=0)
    return charts.column_chart(
        key="calls-per-hour",
        title=_("Calls per hour"),
        description=ngettext(
            "Calls placed each hour from %(start)s to %(end)s: %(total)d call in all, at "
            "most %(busiest)d in one hour.",
            "Calls placed each hour from %(start)s to %(end)s: %(total)d calls in all, at "
            "most %(busiest)d in one hour.",
            total,
        )
        % {
            "start": date_format(hours[0].start, "SHORT_DATETIME_FORMAT"),
            "end": date_format(
                timezone.localtime(
                    hours[-1].start.astimezone(datetime.UTC) + datetime.timedelta(hours=1)
                ),
                "SHORT_DATETIME_FORMAT",
            ),
            "total": total,
            "busiest": busiest,
        },
        columns=(_("Hour"), _("Calls")),
        points=[(_hour(hour.start), hour.calls) for hour in hours],
        label_every=CHART_LABEL_EVERY,
    )


def outcome_labels() -> dict[str, str]:
    return {
        "answered": _("Answered by a person"),
        "voicemail": _("Voicemail"),
        "busy": str(CallStatus.BUSY.label),
        "no-answer": str(CallStatus.NO_ANSWER.label),
        "failed": str(CallStatus.FAILED.label),
        "canceled": str(CallStatus.CANCELED.label),
    }


def _outcomes_chart(stats: CampaignStats) -> charts.Chart:
    ended = sum(stats.calls_by_outcome.values())
    labels = outcome_labels()
    points = [
        (
            str(labels[outcome]),
            count,
            f"{count} ({percent(count / ended)})" if ended else str(count),
        )
        for outcome, count in stats.calls_by_outcome.items()
    ]
    return charts.bar_chart(
        key="outcomes",
        title=_("Outcomes"),
        description=ngettext(
            "How the %(count)d ended call went, by outcome.",
            "How the %(count)d ended calls went, by outcome.",
            ended,
        )
        % {"count": ended},
        columns=(_("Outcome"), _("Calls")),
        points=points,
    )


def _answer_rate_chart(hours: list[Hour]) -> charts.Chart:
    return charts.line_chart(
        key="answer-rate",
        title=_("Answer rate per hour"),
        description=_(
            "Calls a person answered over the calls that ended after reaching the carrier, "
            "for the calls placed each hour; hours without such calls are left out."
        ),
        columns=(_("Hour"), _("Answer rate")),
        points=[
            (
                _hour(hour.start),
                hour.answer_rate,
                _("%(rate)s (%(answered)d of %(ended)d)")
                % {
                    "rate": percent(hour.answer_rate),
                    "answered": hour.answered,
                    "ended": hour.ended,
                },
            )
            for hour in hours
        ],
        label_every=CHART_LABEL_EVERY,
    )


# --- Pacing -------------------------------------------------------------------------------


def effective_calls_per_second(campaign: Campaign) -> Decimal:
    """The rate the dispatcher lets the campaign dial at: its own bucket, within its
    partner's cap and the account's (TWILIO_MAX_CPS), which every running campaign draws
    from."""
    return min(campaign.effective_calls_per_second, Decimal(settings.TWILIO_MAX_CPS))


def pacing_limits(*, campaign: Campaign, stats: CampaignStats) -> list[PacingLimit]:
    """The campaign's two pacing limits as calls/dispatcher.py applies them."""
    rate, platform = campaign.calls_per_second, Decimal(settings.TWILIO_MAX_CPS)
    partner_rate = campaign.partner.calls_per_second_cap
    effective = effective_calls_per_second(campaign)
    binding = [
        name
        for name, value in (
            (_("This campaign's setting"), rate),
            (_("The partner's cap"), partner_rate),
            (_("The platform cap (TWILIO_MAX_CPS)"), platform),
        )
        if value == effective
    ]
    rate_binds = binding[0] if len(binding) == 1 else _("Several: they are equal")
    concurrent = campaign.max_concurrent_calls
    concurrent_cap = campaign.partner.max_concurrent_calls_cap
    effective_concurrent = campaign.effective_max_concurrent_calls
    expected = _expected_concurrency(campaign, stats)
    if expected is not None and expected < effective_concurrent:
        concurrency_binds = _("Not reached: the calls per second bind first")
    elif concurrent > concurrent_cap:
        concurrency_binds = _("The partner's cap")
    else:
        concurrency_binds = _("This campaign's setting")
    return [
        PacingLimit(
            key="calls_per_second",
            name=_("Calls per second"),
            configured=number(rate),
            cap=_(
                "%(cap)s (TWILIO_MAX_CPS, for the whole account); %(partner)s (the "
                "partner's cap, for all its campaigns)"
            )
            % {"cap": number(platform), "partner": number(partner_rate)},
            effective=number(effective),
            binds=rate_binds,
        ),
        PacingLimit(
            key="max_concurrent_calls",
            name=_("Concurrent calls"),
            configured=str(concurrent),
            cap=_("%(cap)s (the partner's cap, for all its campaigns)") % {"cap": concurrent_cap},
            effective=str(effective_concurrent),
            binds=concurrency_binds,
        ),
    ]


def _expected_concurrency(campaign: Campaign, stats: CampaignStats) -> float | None:
    """How many calls run at once when the campaign dials at its effective rate and its
    answered calls last as long as so far (rate times length); None before any."""
    if not stats.average_answered_seconds:
        return None
    return float(effective_calls_per_second(campaign)) * stats.average_answered_seconds


def pacing_notes(*, campaign: Campaign, stats: CampaignStats) -> list[str]:
    """What else shapes the pace: the dispatcher's tick, the account's rate shared with
    the other running campaigns, the length of calls against the concurrency limit, and
    Twilio's own limit on the account's calls at once."""
    notes = [
        _(
            "The dispatcher runs every %(interval)s s and creates calls only while both "
            "the account's and this campaign's calls-per-second allowances have room, and "
            "while fewer than %(concurrent)d of the campaign's calls are going on."
        )
        % {
            "interval": number(DISPATCH_INTERVAL_SECONDS),
            "concurrent": campaign.effective_max_concurrent_calls,
        }
    ]
    others = Campaign.objects.running().exclude(pk=campaign.pk).count()
    if others:
        share = Decimal(settings.TWILIO_MAX_CPS) / (others + 1)
        note = ngettext(
            "TWILIO_MAX_CPS is shared in turns with %(others)d other running campaign: "
            "while both have calls to make, this one gets about %(share)s calls per second.",
            "TWILIO_MAX_CPS is shared in turns with %(others)d other running campaigns: "
            "while all have calls to make, this one gets about %(share)s calls per second.",
            others,
        ) % {"others": others, "share": number(share)}
        if share < effective_calls_per_second(campaign):
            note += " " + _("The shared cap then binds, not this campaign's setting.")
        notes.append(note)
    expected = _expected_concurrency(campaign, stats)
    if expected is not None:
        notes.append(
            _(
                "At %(rate)s calls per second, with answered calls lasting %(duration)s on "
                "average, about %(expected)s calls go on at once, against a limit of "
                "%(limit)d."
            )
            % {
                "rate": number(effective_calls_per_second(campaign)),
                "duration": duration(stats.average_answered_seconds),
                "expected": number(expected, places=1),
                "limit": campaign.effective_max_concurrent_calls,
            }
        )
    notes.append(
        _(
            "Twilio also limits the calls of the whole account going on at once: when it "
            "refuses one for that (error 10004), the campaign dials nothing for %(first)d s, "
            "twice as long after each refusal in a row, up to %(cap)d min."
        )
        % {"first": BACKOFF_FIRST.total_seconds(), "cap": BACKOFF_CAP.total_seconds() // 60}
    )
    return notes
