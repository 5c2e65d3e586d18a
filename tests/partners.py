"""The telephony limits staff grant a partner trusted with the suite's numbers, profiles
and pacing (campaigns/limits.py): the suite's campaigns call from and transfer to these
numbers, on any profile, at any pace it tests. The limits' own tests
(tests/security/test_telephony_limits.py) start from a partner's defaults instead."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from campaigns.models import ComplianceProfile, Partner

TRUSTED_LIMITS: dict[str, Any] = {
    "caller_numbers": [
        "+34910000000",
        "+34910000001",
        "+34910000002",
        "+34910000222",
        "+34930000002",
        "+14155552671",
    ],
    "transfer_numbers": ["+34910000999", "+15005550006"],
    "compliance_profiles": list(ComplianceProfile.values),
    "max_concurrent_calls_cap": 1000,
    "calls_per_second_cap": Decimal("999"),
    "max_attempts_cap": 100,
}


def trust(partner: Partner) -> Partner:
    """``partner`` with TRUSTED_LIMITS, saved."""
    for name, value in TRUSTED_LIMITS.items():
        setattr(partner, name, value)
    partner.save(update_fields=[*TRUSTED_LIMITS, "updated_at"])
    return partner
