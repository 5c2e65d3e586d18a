"""Reports that count calls: a campaign's figures (stats), its page in the staff console
(dashboard) and its figures in the API (serializers, views).

campaigns' pages reach the first two, and a campaign's abandonment rate
(calls.abandonment), through campaigns.reports, which CallsConfig.ready() points at this
package: the names below are what that seam asks for.
"""

from __future__ import annotations

from calls.abandonment import abandonment_of as abandonment_of
from calls.abandonment import campaign_abandonment as campaign_abandonment
from calls.abandonment import with_abandonment as with_abandonment
from calls.reports.dashboard import campaign_dashboard as campaign_dashboard
from calls.reports.stats import with_progress as with_progress
