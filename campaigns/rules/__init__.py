"""Calling rules as versioned data: when a number may be called under a compliance profile.

Each profile and local override below names its rule id (the table in
``docs/architecture.md``, *Calling rules and eligibility*) and its source; each profile also
says which legal bases a marketing campaign may call on (``Profile.marketing_basis``).
Hours are local wall-clock intervals ``[start, end)`` in the callee's time zone ("21:00" ends before
21:00:00; "24:00" is the end of the day). A state or campaign window only ever narrows a
profile: every applicable set of hours is intersected, and a holiday closes the whole day.

Any change to the data in ``profiles.py`` bumps ``RULES_DATA_VERSION``; ``RULES_VERSION``
also names the versions of the holiday calendars and the numbering plan data that decisions
depend on, so an audit can tell exactly which rules allowed a call. The package: the
profiles (``profiles``), where a number is (``jurisdictions``), and when it may be called
(``windows``); import from ``campaigns.rules``.
"""

from __future__ import annotations

from campaigns.rules.jurisdictions import _ES_PREFIX_COMMUNITIES as _ES_PREFIX_COMMUNITIES
from campaigns.rules.jurisdictions import _US_AREA_CODE_STATES as _US_AREA_CODE_STATES
from campaigns.rules.jurisdictions import Jurisdiction as Jurisdiction
from campaigns.rules.jurisdictions import jurisdiction_for as jurisdiction_for
from campaigns.rules.profiles import BASIS_CONSENT as BASIS_CONSENT
from campaigns.rules.profiles import BASIS_CUSTOMER as BASIS_CUSTOMER
from campaigns.rules.profiles import BASIS_SERVICE as BASIS_SERVICE
from campaigns.rules.profiles import HORIZON as HORIZON
from campaigns.rules.profiles import PROFILE_ES as PROFILE_ES
from campaigns.rules.profiles import PROFILE_NONE as PROFILE_NONE
from campaigns.rules.profiles import PROFILE_US as PROFILE_US
from campaigns.rules.profiles import PROFILES as PROFILES
from campaigns.rules.profiles import RULES_DATA_VERSION as RULES_DATA_VERSION
from campaigns.rules.profiles import RULES_VERSION as RULES_VERSION
from campaigns.rules.profiles import WEEKDAYS as WEEKDAYS
from campaigns.rules.profiles import BasisRule as BasisRule
from campaigns.rules.profiles import FrequencyCap as FrequencyCap
from campaigns.rules.profiles import Interval as Interval
from campaigns.rules.profiles import ListRequirement as ListRequirement
from campaigns.rules.profiles import LocalRule as LocalRule
from campaigns.rules.profiles import Profile as Profile
from campaigns.rules.profiles import Week as Week
from campaigns.rules.windows import calling_window_problems as calling_window_problems
from campaigns.rules.windows import frequency_caps as frequency_caps
from campaigns.rules.windows import is_holiday as is_holiday
from campaigns.rules.windows import next_common_opening as next_common_opening
from campaigns.rules.windows import next_opening as next_opening
from campaigns.rules.windows import parse_calling_windows as parse_calling_windows
from campaigns.rules.windows import window_allows as window_allows
