"""What campaigns' pages show of the calls made for them: a seam that calls fills in.

campaigns sits below calls (calls builds on campaigns, never the other way round), yet the
campaign list shows each campaign's live calls and answer rate, and a campaign's page its
figures, charts and pacing. Those count calls, so calls provides them (calls.reports) and
registers them here when its app is ready (calls/apps.py); campaigns' admin asks through
the functions below without importing calls. The labels they share count nothing: here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.template.defaultfilters import floatformat
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

if TYPE_CHECKING:
    from campaigns.models import Campaign


class CampaignReports(Protocol):
    """What the app that counts calls provides (calls.reports)."""

    def with_progress(self, campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]: ...

    def campaign_dashboard(self, *, campaign: Campaign) -> Any: ...

    def campaign_abandonment(self, *, campaign: Campaign) -> Abandonment: ...

    def with_abandonment(self, campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]: ...

    def abandonment_of(self, campaign_ids: Iterable[int]) -> dict[int, Abandonment]: ...


_reports: CampaignReports | None = None


def register_reports(reports: CampaignReports) -> None:
    """Make ``reports`` the source of the figures campaigns' pages show."""
    global _reports  # one registration, from CallsConfig.ready()
    _reports = reports


def registered_reports() -> CampaignReports:
    """The registered reports; refused loudly when no app registered them."""
    if _reports is None:
        raise ImproperlyConfigured(
            "No app registered the campaign reports (campaigns.reports.register_reports): "
            "is calls in INSTALLED_APPS?"
        )
    return _reports


def with_progress(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """``campaigns`` each with ``contacts_total``, ``contacts_done``, ``live_calls``,
    ``answered_calls`` and ``ended_calls`` (calls.reports.stats.with_progress)."""
    return registered_reports().with_progress(campaigns)


def campaign_dashboard(*, campaign: Campaign) -> Any:
    """What ``campaign``'s page shows above its settings now
    (calls.reports.dashboard.campaign_dashboard)."""
    return registered_reports().campaign_dashboard(campaign=campaign)


def campaign_abandonment(*, campaign: Campaign) -> Abandonment:
    """``campaign``'s abandoned calls over the last 30 days
    (calls.abandonment.campaign_abandonment)."""
    return registered_reports().campaign_abandonment(campaign=campaign)


def with_abandonment(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """``campaigns`` each with ``abandoned_calls`` and ``live_answered_calls`` over the last
    30 days (calls.abandonment.with_abandonment)."""
    return registered_reports().with_abandonment(campaigns)


def abandonment_of(campaign_ids: Iterable[int]) -> dict[int, Abandonment]:
    """The abandonment of each campaign of ``campaign_ids`` by id, in one query
    (calls.abandonment.abandonment_of)."""
    return registered_reports().abandonment_of(campaign_ids)


# The days a campaign's abandonment rate is measured over (47 CFR 64.1200(a)(7)), the rate
# that raises its alert, and the legal limit, at which an abandoned call pauses it.
ABANDONMENT_WINDOW_DAYS = 30
ABANDONMENT_ALERT_RATE = 0.01
ABANDONMENT_PAUSE_RATE = 0.03


@dataclasses.dataclass(frozen=True)
class Abandonment:
    """A campaign's calls answered live by a person within the last ``window_days`` days,
    and how many of them were abandoned (nothing heard from us within 2 s of the answer;
    calls/abandonment.py defines it)."""

    abandoned: int
    answered: int
    window_days: int

    @property
    def rate(self) -> float | None:
        """Abandoned over live-answered calls; None before any was answered."""
        return self.abandoned / self.answered if self.answered else None

    @property
    def judged_rate(self) -> float:
        """The rate the alert and the pause act on: taken over at least
        ABANDONMENT_MIN_ANSWERED calls, so that one slow call among the first few does not
        pause a campaign (three abandoned calls still do, before the hundredth by
        default)."""
        return self.abandoned / max(self.answered, settings.ABANDONMENT_MIN_ANSWERED, 1)

    @property
    def at_limit(self) -> bool:
        """Whether the campaign's next abandoned call pauses it."""
        return self.judged_rate >= ABANDONMENT_PAUSE_RATE

    def rate_label(self) -> str:
        """The rate as a percentage to one decimal ("1.2 %"); "—" without a rate."""
        if self.rate is None:
            return "—"
        return _("%(rate)s %%") % {"rate": floatformat(self.rate * 100, 1)}

    def short_label(self) -> str:
        """ "1.2 % (3 of 250)", for a list; "—" without a rate."""
        if self.rate is None:
            return "—"
        return _("%(rate)s (%(abandoned)s of %(answered)s)") % {
            "rate": self.rate_label(),
            "abandoned": self.abandoned,
            "answered": self.answered,
        }

    def label(self) -> str:
        """ "1.2 % — 3 of 250 live-answered calls in 30 days", as staff read it."""
        if not self.answered:
            return _("No live-answered calls in %(days)s days") % {"days": self.window_days}
        return ngettext(
            "%(rate)s — %(abandoned)s of %(answered)s live-answered call in %(days)s days",
            "%(rate)s — %(abandoned)s of %(answered)s live-answered calls in %(days)s days",
            self.answered,
        ) % {
            "rate": self.rate_label(),
            "abandoned": self.abandoned,
            "answered": self.answered,
            "days": self.window_days,
        }


def progress_label(done: int, total: int) -> str:
    return _("%(done)d of %(total)d contacts done") % {"done": done, "total": total}


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{floatformat(fraction * 100, 0)}%"
