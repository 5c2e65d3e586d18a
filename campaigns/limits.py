"""A partner's telephony limits, set by staff: the numbers its campaigns call from and
transfer to, the compliance profiles they may choose, and caps on their pacing.

Writes are refused beyond them (``limit_errors``, from the campaign services, so the API
and the admin alike). The dialer applies them again at dial time, as limits may be lowered
after a campaign was saved: pacing above a cap is clamped to it
(``Campaign.effective_*``, ``clamped_pacing``), and a campaign whose numbers or profile
are no longer allowed is not dialled (``dial_problems``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, Partner

# Each campaign pacing setting and the partner's cap on it.
PACING_CAPS = {
    "max_concurrent_calls": "max_concurrent_calls_cap",
    "calls_per_second": "calls_per_second_cap",
    "max_attempts": "max_attempts_cap",
}
LIMITED_FIELDS = ("caller_number", "transfer_number", "compliance_profile", *PACING_CAPS)
# A partner's own fields that hold its limits (staff's to set, in the admin).
PARTNER_LIMIT_FIELDS = (
    "caller_numbers",
    "transfer_numbers",
    "compliance_profiles",
    *PACING_CAPS.values(),
)


def _listed(values: Iterable[Any]) -> str:
    return ", ".join(str(value) for value in values)


def allowed_caller_numbers(partner: Partner) -> list[str]:
    """The numbers ``partner``'s campaigns may call from: its own and TWILIO_PHONE_NUMBER."""
    numbers = list(partner.caller_numbers)
    if settings.TWILIO_PHONE_NUMBER and settings.TWILIO_PHONE_NUMBER not in numbers:
        numbers.append(settings.TWILIO_PHONE_NUMBER)
    return numbers


def _caller_number_error(partner: Partner, number: str) -> ValidationError | None:
    # Empty is TWILIO_PHONE_NUMBER, the deployment's own number, always allowed.
    if not number or number in allowed_caller_numbers(partner):
        return None
    allowed = allowed_caller_numbers(partner)
    if not allowed:
        return ValidationError(
            _(
                "The caller number %(value)s is not one of this partner's numbers: it has "
                "none; staff add them on the partner's page."
            ),
            code="caller_number_not_allowed",
            params={"value": number},
        )
    return ValidationError(
        _("The caller number %(value)s is not one of this partner's numbers: %(allowed)s."),
        code="caller_number_not_allowed",
        params={"value": number, "allowed": _listed(allowed)},
    )


def _transfer_number_error(partner: Partner, number: str) -> ValidationError | None:
    if not number or number in partner.transfer_numbers:
        return None
    if not partner.transfer_numbers:
        return ValidationError(
            _(
                "The transfer number %(value)s is not allowed: this partner has no transfer "
                "number; staff add them on the partner's page."
            ),
            code="transfer_number_not_allowed",
            params={"value": number},
        )
    return ValidationError(
        _(
            "The transfer number %(value)s is not one of this partner's transfer numbers: "
            "%(allowed)s."
        ),
        code="transfer_number_not_allowed",
        params={"value": number, "allowed": _listed(partner.transfer_numbers)},
    )


def _profile_error(partner: Partner, profile: str) -> ValidationError | None:
    if profile in partner.compliance_profiles:
        return None
    return ValidationError(
        _(
            "The compliance profile “%(value)s” is not allowed for this partner, which may "
            "choose: %(allowed)s."
        ),
        code="compliance_profile_not_allowed",
        params={"value": profile, "allowed": _listed(partner.compliance_profiles) or "-"},
    )


def _cap_error(partner: Partner, name: str, value: Any) -> ValidationError | None:
    cap = getattr(partner, PACING_CAPS[name])
    if value is None or value <= cap:
        return None
    return ValidationError(
        _("%(value)s is above this partner's cap of %(cap)s for %(field)s."),
        code="above_partner_cap",
        params={"value": _number(value), "cap": _number(cap), "field": name},
    )


def _number(value: Any) -> str:
    """2.50 as "2.5", 3.00 as "3": as people write them."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def limit_errors(
    *, partner: Partner, values: Mapping[str, Any]
) -> dict[str, list[ValidationError]]:
    """Why the campaign settings in ``values`` (model field names, numbers in E.164) go
    beyond ``partner``'s limits, by field; empty when they do not. Fields not in
    ``values`` are not checked."""
    checks = {
        "caller_number": _caller_number_error,
        "transfer_number": _transfer_number_error,
        "compliance_profile": _profile_error,
    }
    errors: dict[str, list[ValidationError]] = {}
    for name, value in values.items():
        if name in checks:
            error = checks[name](partner, value)
        elif name in PACING_CAPS:
            error = _cap_error(partner, name, value)
        else:
            continue
        if error is not None:
            errors[name] = [error]
    return errors


def dial_problems(*, campaign: Campaign) -> list[str]:
    """Why ``campaign`` may not be dialled under its partner's limits as they are now: a
    caller number, transfer number or compliance profile staff no longer allow (empty:
    none). Pacing above a cap is not a problem: the dialer clamps it."""
    errors = limit_errors(
        partner=campaign.partner,
        values={
            "caller_number": campaign.caller_number,
            "transfer_number": campaign.transfer_number,
            "compliance_profile": campaign.compliance_profile,
        },
    )
    return [message for error in errors.values() for message in ValidationError(error).messages]


def allowed_transfer_number(campaign: Campaign) -> str:
    """Where a call of ``campaign`` may be put through: its transfer number while its
    partner's limits allow it, else empty (as a campaign without one): a number staff
    withdrew is not dialled, not even from a call already going on or a ring-back."""
    number = campaign.transfer_number
    return number if number in campaign.partner.transfer_numbers else ""


def clamped_pacing(*, campaign: Campaign) -> list[str]:
    """The campaign's pacing settings above its partner's caps, each saying what the
    dialer uses instead (empty: none is)."""
    partner = campaign.partner
    notes = []
    for name, cap_name in PACING_CAPS.items():
        value, cap = getattr(campaign, name), getattr(partner, cap_name)
        if value > cap:
            notes.append(
                gettext(
                    "The dialer uses %(cap)s for %(field)s: the campaign's %(value)s is above "
                    "this partner's cap."
                )
                % {"field": name, "value": _number(value), "cap": _number(cap)}
            )
    return notes
