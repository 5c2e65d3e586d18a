"""Prices: what each ended call cost, asked of Twilio once it knows.

Twilio prices a call a little after its end and no callback carries the price, so a beat
tick (``check_prices``) asks for it, with a growing back-off, until it is known, given up
on, or known never to come (a call Twilio never had).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls import telephony
from calls.callbacks import record_price
from calls.models import Call, PriceStatus
from calls.outcomes import emit_call_priced

logger = logging.getLogger(__name__)

# The price tick's period (CELERY_BEAT_SCHEDULE "check-call-prices"); a tick left waiting
# longer expires.
PRICE_TICK_SECONDS = 10
# Calls asked for their price per tick (one request each), so that one tick stays short.
PRICE_BATCH = 50
# A check that found no price yet is repeated after this, doubled at each check (15 s,
# 30 s, 1 min...) up to PRICE_RETRY_MAX: most calls are priced within a minute, and one
# Twilio is slow to price (or Twilio unreachable, or refusing our credentials) costs a
# request an hour at most.
PRICE_RETRY = datetime.timedelta(seconds=15)
PRICE_RETRY_MAX = datetime.timedelta(hours=1)
# Twilio prices a call within minutes of its end: a day after it, none is to be expected.
PRICE_GIVE_UP = datetime.timedelta(days=1)
# How long a claimed check keeps other ticks off its call: a worker that died mid-check
# leaves the call to be asked again after it.
PRICE_CLAIM = datetime.timedelta(minutes=5)


@dataclass
class PriceChecks:
    """One price tick, by call id."""

    known: list[int] = field(default_factory=list)  # priced by Twilio: kept
    waiting: list[int] = field(default_factory=list)  # no price yet: asked again later
    unavailable: list[int] = field(default_factory=list)  # given up on
    not_charged: list[int] = field(default_factory=list)  # never reached Twilio (no SID)


def check_prices(*, now: datetime.datetime | None = None, limit: int = PRICE_BATCH) -> PriceChecks:
    """Ask Twilio for the price of the ended calls due for it (``price_check_at`` past),
    earliest first, at most ``limit``.

    Each call is claimed first (a compare-and-set on its ``price_check_at``, moved
    ``PRICE_CLAIM`` ahead), so ticks running at once never ask for one call together.
    A price found is kept (``known``). None yet, Twilio unreachable or refusing our
    credentials: asked again after a growing back-off (and the tick stops asking
    Twilio, which would fail alike for the calls after it). Twilio not knowing the call
    (404), or a day gone since its end without a price: ``unavailable``, logged.
    """
    now = now or timezone.now()
    result = PriceChecks()
    due = list(
        Call.objects.filter(price_status=PriceStatus.PENDING, price_check_at__lte=now)
        .order_by("price_check_at", "pk")
        .values_list("pk", "price_check_at")[:limit]
    )
    for call_id, check_at in due:
        claimed = Call.objects.filter(
            pk=call_id, price_status=PriceStatus.PENDING, price_check_at=check_at
        ).update(price_check_at=now + PRICE_CLAIM, price_checks=F("price_checks") + 1)
        if not claimed:
            continue  # another tick took it meanwhile
        outcome, twilio_failed = _check_price(Call.objects.get(pk=call_id), now)
        getattr(result, outcome).append(call_id)
        if twilio_failed:
            break
    return result


def _check_price(call: Call, now: datetime.datetime) -> tuple[str, bool]:
    """Ask Twilio for the claimed ``call``'s price and keep what it says: the outcome (a
    ``PriceChecks`` field), and whether Twilio failed in a way every call would."""
    if not call.provider_sid:  # never reached Twilio: nothing was charged
        _settle_price(call, PriceStatus.NOT_CHARGED)
        return "not_charged", False
    twilio_failed = False
    try:
        provider_call = telephony.fetch_call(sid=call.provider_sid)
    except telephony.TelephonyUnavailable as error:
        twilio_failed = True
        logger.warning("Call %s: Twilio unreachable for its price (%s); later.", call.pk, error)
    except telephony.TelephonyRejected as error:
        if error.status == 404:
            logger.warning("Call %s: Twilio does not know it; no price.", call.pk)
            _settle_price(call, PriceStatus.UNAVAILABLE)
            return "unavailable", False
        twilio_failed = True
        logger.error("Call %s: Twilio refused to tell its price (%s); later.", call.pk, error)
    else:
        if record_price(
            call_id=call.pk, price=provider_call.price, price_unit=provider_call.price_unit
        ):
            return "known", False
    if now >= (call.ended_at or call.updated_at) + PRICE_GIVE_UP:
        logger.warning("Call %s: no price from Twilio a day after the call; given up.", call.pk)
        _settle_price(call, PriceStatus.UNAVAILABLE)
        return "unavailable", twilio_failed
    steps = min(call.price_checks, 16) - 1  # price_checks counts this check already
    delay = min(PRICE_RETRY * 2**steps, PRICE_RETRY_MAX)
    Call.objects.filter(pk=call.pk, price_status=PriceStatus.PENDING).update(
        price_check_at=now + delay
    )
    return "waiting", twilio_failed


def _settle_price(call: Call, status: PriceStatus) -> None:
    """No price will be asked for ``call`` any more: ``status`` says why. Given up on, its
    cost is as final as it will be: partner webhooks get call.priced."""
    with transaction.atomic():
        settled = Call.objects.filter(pk=call.pk, price_status=PriceStatus.PENDING).update(
            price_status=status, price_check_at=None
        )
        if settled and status == PriceStatus.UNAVAILABLE:
            emit_call_priced(call=call)
