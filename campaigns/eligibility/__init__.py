"""May this contact be called now, and if not, why and when?

``evaluate`` is a pure function of the contact, its campaign, the time and a few facts the
caller loads (``load_eligibility_facts``), so the dispatcher can run it when it picks
contacts and the dialler again right before dialling, and tests can run it without a
database. Every decision carries the calling rules' version (for audits and disputes).

The package: ``verdict`` (``evaluate`` and its checks, pure), ``facts`` (what it needs,
loaded from the database) and ``blocked`` (the contacts no time will make callable);
import from ``campaigns.eligibility``.
"""

from __future__ import annotations

from campaigns.eligibility.blocked import Blocked as Blocked
from campaigns.eligibility.blocked import blocked_for_good as blocked_for_good
from campaigns.eligibility.blocked import count_blocked as count_blocked
from campaigns.eligibility.blocked import needed_variables as needed_variables
from campaigns.eligibility.blocked import no_legal_basis_condition as no_legal_basis_condition
from campaigns.eligibility.facts import do_not_call_and_erased as do_not_call_and_erased
from campaigns.eligibility.facts import eligibilities as eligibilities
from campaigns.eligibility.facts import eligibility_for as eligibility_for
from campaigns.eligibility.facts import load_eligibility_facts as load_eligibility_facts
from campaigns.eligibility.verdict import Eligibility as Eligibility
from campaigns.eligibility.verdict import EligibilityFacts as EligibilityFacts
from campaigns.eligibility.verdict import Reason as Reason
from campaigns.eligibility.verdict import ReasonCode as ReasonCode
from campaigns.eligibility.verdict import evaluate as evaluate
from campaigns.eligibility.verdict import history_hours as history_hours
from campaigns.eligibility.verdict import legal_basis_reasons as legal_basis_reasons
