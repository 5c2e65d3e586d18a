"""Reports that count calls: a campaign's figures (stats), its page in the staff console
(dashboard) and its figures in the API (serializers, views).

campaigns' pages reach the first two through campaigns.reports, which CallsConfig.ready()
points at this package: the names below are what that seam asks for.
"""

from __future__ import annotations

from calls.reports.dashboard import campaign_dashboard as campaign_dashboard
from calls.reports.stats import with_progress as with_progress
