from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = _("Calls")

    def ready(self) -> None:
        # campaigns' pages show figures that count calls: calls provides them (see
        # campaigns/reports.py), as it provides the gauges of live calls and of abandonment
        # /metrics serves.
        from callcenter.metrics import ABANDONMENT_RATE, LIVE_CALLS
        from calls import reports
        from calls.abandonment import abandonment_by_campaign
        from calls.reports.stats import live_calls_by_campaign_state
        from campaigns.reports import register_reports

        register_reports(reports)
        LIVE_CALLS.read_by(live_calls_by_campaign_state)
        ABANDONMENT_RATE.read_by(abandonment_by_campaign)
