"""What calls cost, whole: telephony, speech and the model, in COST_CURRENCY.

- **Telephony** is the price Twilio puts on the Call resource some time after the call
  ends (``Call.price``, fetched by ``dialing.check_prices``); until then it is pending. A
  call Twilio does not charge costs nothing; one Twilio never priced, or priced in
  another currency than COST_CURRENCY, is left out of the sums and named.
- **Speech** is the ElevenLabs characters of the clips the call played, each clip's
  characters shared among every call that played it (a clip is rendered, and billed,
  once), at ELEVENLABS_PRICES for the clip's model. A call's clips are counted when it
  ends (``services.record_plays``): pending while it is live.
- **The model** is the tokens the call's turns and its outcome extraction billed, at
  OPENAI_PRICES for each model. A model without a price is named and left out.

A campaign's cost (or a day's) is the sum of its calls', counted by the database.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from calls.models import LIVE_STATUSES, Call, CallClip, PriceStatus, Turn
from campaigns.stats import Cost

# Amounts are kept to the millionth of the currency's unit: a short call's speech and
# model cost a fraction of a cent.
PLACES = Decimal("0.000001")
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def call_costs(calls: Iterable[Call]) -> dict[int, Cost]:
    """The cost of each of ``calls`` (Call rows, as loaded), by call id, in three queries
    whatever their number."""
    calls = list(calls)
    ids = [call.pk for call in calls]
    if not ids:
        return {}
    tokens: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for call in calls:
        if call.extraction_model:
            _add_tokens(
                tokens[call.pk],
                call.extraction_model,
                call.extraction_prompt_tokens,
                call.extraction_completion_tokens,
            )
    for row in (
        Turn.objects.filter(call_id__in=ids)
        .exclude(model="")
        .order_by()
        .values("call_id", "model")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    ):
        _add_tokens(tokens[row["call_id"]], row["model"], row["prompt"], row["completion"])
    plays = list(
        CallClip.objects.filter(call_id__in=ids).values_list(
            "call_id", "clip_id", "clip__model_id", "clip__characters"
        )
    )
    uses = dict(
        CallClip.objects.filter(clip_id__in={clip_id for _call, clip_id, _m, _c in plays})
        .order_by()
        .values("clip_id")
        .annotate(n=Count("id"))
        .values_list("clip_id", "n")
    )
    characters: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for call_id, clip_id, model_id, count in plays:
        characters[call_id][model_id] += Decimal(count) / uses[clip_id]
    costs = {}
    for call in calls:
        telephony, pending, unpriced = _telephony([call])
        if call.is_live:  # its clips are counted when it ends (services.record_plays)
            pending = (*pending, "speech")
        costs[call.pk] = _cost(
            telephony=telephony,
            pending=pending,
            unpriced=unpriced,
            calls_pending=len(pending),
            tokens=tokens.get(call.pk, {}),
            characters=characters.get(call.pk, {}),
        )
    return costs


def call_cost(call: Call) -> Cost:
    """The cost of one call."""
    return call_costs([call])[call.pk]


def campaign_cost(*, campaign_id: int) -> Cost:
    """What the calls of campaign ``campaign_id`` cost so far: the sum of their costs, in a
    few aggregate queries whatever the campaign's size."""
    return calls_cost(calls=Call.objects.filter(campaign_id=campaign_id))


def calls_cost(*, calls: QuerySet[Call]) -> Cost:
    """What ``calls`` (a campaign's, a day's) cost so far: the sum of their costs, in three
    aggregate queries whatever their number."""
    calls = calls.order_by()
    currency = settings.COST_CURRENCY
    telephony, calls_pending, unavailable, other_currencies = Decimal(0), 0, 0, set()
    live = 0
    extraction = []
    # Prices and the extraction's tokens in one pass over the calls: a group for each
    # price state, currency and extraction model, a handful whatever their number.
    for row in calls.values("price_status", "price_unit", "extraction_model").annotate(
        count=Count("pk"),
        amount=Sum("price"),
        live=Count("pk", filter=Q(status__in=LIVE_STATUSES)),
        prompt=Sum("extraction_prompt_tokens"),
        completion=Sum("extraction_completion_tokens"),
    ):
        if row["extraction_model"]:
            extraction.append(row)
        status, unit, count = row["price_status"], row["price_unit"], row["count"]
        if status == PriceStatus.NOT_CHARGED:
            continue
        live += row["live"]
        if status == PriceStatus.PENDING:
            calls_pending += count
        elif status == PriceStatus.UNAVAILABLE:
            unavailable += count
        elif unit and unit != currency:
            other_currencies.add(unit)
        else:
            telephony += row["amount"] or 0
    tokens: dict[str, list[int]] = {}
    for turns in (
        Turn.objects.filter(call__in=calls.values("pk"))
        .exclude(model="")
        .order_by()
        .values("model")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    ):
        _add_tokens(tokens, turns["model"], turns["prompt"], turns["completion"])
    for row in extraction:
        _add_tokens(tokens, row["extraction_model"], row["prompt"], row["completion"])
    unpriced = [f"telephony:{unit}" for unit in sorted(other_currencies)]
    if unavailable:
        unpriced.append("telephony:unavailable")
    return _cost(
        telephony=telephony,
        pending=(*(("telephony",) if calls_pending else ()), *(("speech",) if live else ())),
        unpriced=tuple(unpriced),
        calls_pending=calls_pending,
        tokens=tokens,
        characters=_characters(calls),
    )


def _characters(calls: QuerySet[Call]) -> dict[str, Decimal]:
    """Characters by speech model that ``calls`` played: each clip's characters times the
    share of its plays that were theirs."""
    clip = CallClip._meta.db_table
    speech_clip = CallClip._meta.get_field("clip").related_model._meta.db_table
    chosen, params = calls.values("pk").query.sql_with_params()
    # One row per clip the calls played; every play of it counted by the index on the
    # clip (a correlated count, so other calls' plays are only counted, not read).
    sql = f"""
        SELECT sc.model_id, SUM(sc.characters * 1.0 * played.n / (
            SELECT COUNT(*) FROM {clip} every WHERE every.clip_id = played.clip_id
        ))
        FROM (
            SELECT cc.clip_id AS clip_id, COUNT(*) AS n
            FROM {clip} cc
            WHERE cc.call_id IN ({chosen})
            GROUP BY cc.clip_id
        ) played
        JOIN {speech_clip} sc ON sc.id = played.clip_id
        GROUP BY sc.model_id
    """  # noqa: S608 - table names from the models, the calls' query from the ORM
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {model: Decimal(str(characters)) for model, characters in cursor.fetchall()}


def _telephony(calls: list[Call]) -> tuple[Decimal, tuple[str, ...], tuple[str, ...]]:
    amount, pending, unpriced = Decimal(0), [], []
    for call in calls:
        if call.price_status == PriceStatus.PENDING:
            pending.append("telephony")
        elif call.price_status == PriceStatus.UNAVAILABLE:
            unpriced.append("telephony:unavailable")
        elif call.price_status == PriceStatus.KNOWN and call.price is not None:
            if call.price_unit and call.price_unit != settings.COST_CURRENCY:
                unpriced.append(f"telephony:{call.price_unit}")
            else:
                amount += call.price
    return amount, tuple(dict.fromkeys(pending)), tuple(dict.fromkeys(unpriced))


def _add_tokens(
    tokens: dict[str, list[int]], model: str, prompt: int | None, completion: int | None
) -> None:
    counts = tokens.setdefault(model, [0, 0])
    counts[0] += prompt or 0
    counts[1] += completion or 0


def _cost(
    *,
    telephony: Decimal,
    pending: tuple[str, ...],
    unpriced: tuple[str, ...],
    calls_pending: int,
    tokens: dict[str, list[int]],
    characters: dict[str, Decimal],
) -> Cost:
    unpriced_models = []
    model_amount = Decimal(0)
    for model, (prompt, completion) in tokens.items():
        price = model_price(model)
        if price is None:
            unpriced_models.append(f"model:{model}")
            continue
        per_input, per_output = price
        model_amount += (prompt * per_input + completion * per_output) / 1_000_000
    speech_amount = Decimal(0)
    for model_id, count in characters.items():
        price = settings.ELEVENLABS_PRICES.get(model_id)
        if price is None:
            unpriced_models.append(f"speech:{model_id}")
            continue
        speech_amount += count * price[0] / 1000
    return Cost(
        currency=settings.COST_CURRENCY,
        telephony=telephony.quantize(PLACES),
        speech=speech_amount.quantize(PLACES),
        model=model_amount.quantize(PLACES),
        pending=pending,
        unpriced=(*unpriced, *sorted(unpriced_models)),
        calls_pending=calls_pending,
        tokens={model: (prompt, completion) for model, (prompt, completion) in tokens.items()},
        characters=dict(characters),
    )


def model_price(model: str) -> tuple[Decimal, ...] | None:
    """OPENAI_PRICES' (input, output) price per million tokens of ``model`` (settings.py
    checks there are two): by its name,
    or without a provider prefix (``openai/``) and a dated snapshot (``-2024-07-18``)."""
    prices = settings.OPENAI_PRICES
    name = model.split("/")[-1]
    for candidate in (model, name, _SNAPSHOT.sub("", name)):
        if candidate in prices:
            return prices[candidate]
    return None
