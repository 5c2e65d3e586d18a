"""What campaigns' pages show of the calls made for them: a seam that calls fills in.

campaigns sits below calls (calls builds on campaigns, never the other way round), yet the
campaign list shows each campaign's live calls and answer rate, and a campaign's page its
figures, charts and pacing. Those count calls, so calls provides them (calls.reports) and
registers them here when its app is ready (calls/apps.py); campaigns' admin asks through
the functions below without importing calls. The labels they share count nothing: here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.template.defaultfilters import floatformat
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from campaigns.models import Campaign


class CampaignReports(Protocol):
    """What the app that counts calls provides (calls.reports)."""

    def with_progress(self, campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]: ...

    def campaign_dashboard(self, *, campaign: Campaign) -> Any: ...


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


def progress_label(done: int, total: int) -> str:
    return _("%(done)d of %(total)d contacts done") % {"done": done, "total": total}


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{floatformat(fraction * 100, 0)}%"
