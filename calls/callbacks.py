"""Twilio's callbacks about a call: its status, the answering-machine verdict, its
recording. Each is kept once as a raw event (``store_event``) and folded into the call in
one short transaction; what takes longer (turning a machine's call to its voicemail,
concluding the call) is left to tasks.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import kombu.exceptions
from django.db import transaction
from django.db.models import Case, Expression, F, Field, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from callcenter.metrics import CALL_STATUS_CHANGES
from callcenter.queries import insert_unless_taken, one_or_none
from callcenter.text import truncate
from calls.abandonment import check_abandonment
from calls.models import MACHINE_ANSWERS, AnsweredBy, Call, CallEvent, CallStatus, PriceStatus
from calls.services import finish_call, record_plays

logger = logging.getLogger(__name__)


# --- Status callbacks ---------------------------------------------------------------------

# How far along a call is. A callback may only move a call up this ladder: Twilio's
# callbacks arrive late, twice and out of order, and a final status is final.
STATUS_RANK: dict[str, int] = {
    CallStatus.PENDING: 0,
    CallStatus.DIALING: 0,
    CallStatus.QUEUED: 1,
    CallStatus.RINGING: 2,
    CallStatus.IN_PROGRESS: 3,
    CallStatus.COMPLETED: 4,
    CallStatus.BUSY: 4,
    CallStatus.NO_ANSWER: 4,
    CallStatus.FAILED: 4,
    CallStatus.CANCELED: 4,
}
FINAL_STATUSES = frozenset(s for s, rank in STATUS_RANK.items() if rank == 4)
# The `initiated` callback event reports CallStatus=initiated, a status the Call resource
# itself never shows: the call has left Twilio's queue.
STATUS_ALIASES = {"initiated": CallStatus.QUEUED}

# Twilio never puts a price in a callback: its Call resource gets one some seconds to
# minutes after the call ends (`price`, https://www.twilio.com/docs/voice/api/call-resource),
# and busy, unanswered, failed and canceled calls are not charged
# (support.twilio.com/hc/en-us/articles/223132547). A completed call is first asked for
# its price this long after its end (by the price tick, calls.prices.check_prices), soon
# enough for a normal call's price to be kept within a minute.
PRICE_FIRST_CHECK = datetime.timedelta(seconds=10)


def record_call_status(*, call_id: int, params: Mapping[str, str]) -> Call | None:
    """Store a Twilio status callback for call ``call_id`` and fold it into the call.

    The raw event is kept once per (CallSid, kind, SequenceNumber); a callback for an
    unknown call or another call's SID is kept with no call and changes nothing (returns
    None). The status only moves forward (a compare-and-set on the statuses it may come
    from), facts the event carries (answer and end times, duration, answered-by, error)
    only fill blanks, so any order of the same callbacks ends in the same row. A callback
    carries no price (Twilio sends none; a ``Price`` field is ignored). The callback that
    makes the call final settles its price status (``await_price``) and moves its contact
    on (``finish_call``), once, takes its campaign's abandonment rate again
    (``check_abandonment``), and queues the call's conclusion (again when Twilio
    retries it).
    """
    sid = params.get("CallSid", "")
    with transaction.atomic():
        call = one_or_none(Call.objects.filter(pk=call_id))
        if call is not None and not _callback_matches(call=call, sid=sid):
            logger.warning(
                "Status callback for call %s carries SID %s, the call has %s; kept unmatched.",
                call_id,
                sid,
                call.provider_sid,
            )
            call = None
        elif call is None:
            logger.warning("Status callback for unknown call %s (SID %s); kept.", call_id, sid)
        raw_status = params.get("CallStatus", "")
        status = STATUS_ALIASES.get(raw_status, raw_status)
        if not store_event(call=call, kind=CallEvent.Kind.STATUS, params=params):
            # A retried callback: its first delivery was applied with it. Twilio retries
            # when our answer failed, and the final callback's answer fails when the
            # conclusion cannot be queued (the broker down): queue it again. Concluding
            # twice tells nobody anything twice.
            if call is not None and status in FINAL_STATUSES and call.status == status:
                _conclude_later(call.pk)
            return call
        if call is None:
            return None
        if status not in STATUS_RANK:
            logger.warning("Call %s: unknown status %r in a callback; ignored.", call.pk, status)
            return call
        facts = _status_facts(params=params, status=status)
        now = timezone.now()
        moved = Call.objects.filter(
            pk=call.pk,
            status__in=[s for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]],
        ).update(status=status, updated_at=now, **_fill_blanks(facts))
        if not moved and any(_is_blank(getattr(call, name)) for name in facts):
            # Not a step forward, but it may carry facts a callback overtaken by it did not
            # (an `answered` arriving after `completed` still tells when the call was answered).
            Call.objects.filter(pk=call.pk).update(updated_at=now, **_fill_blanks(facts))
        call.refresh_from_db()
        if moved:
            transaction.on_commit(CALL_STATUS_CHANGES.labels(status=status).inc)
        if moved and status in FINAL_STATUSES:
            await_price(call=call)
            record_plays(call=call)
            finish_call(call=call)
            # A person answered and heard nothing within 2 s: the campaign's rate may alert
            # or pause it.
            check_abandonment(call=call)
            _conclude_later(call.pk)
    return call


def _conclude_later(call_id: int) -> None:
    """Queue the call's conclusion once the transaction commits."""
    from calls.tasks import conclude_call_task  # tasks build on this module

    # celery-types knows not the DjangoTask class Celery's Django fix-up gives tasks.
    conclude_call_task.delay_on_commit(call_id)  # type: ignore[attr-defined]


def _callback_matches(*, call: Call, sid: str) -> bool:
    if len(sid) > (Call._meta.get_field("provider_sid").max_length or 0):
        return False  # not a Twilio SID, and it would not fit the column
    if call.provider_sid:
        return sid == call.provider_sid
    # The `initiated` callback can overtake the API response that tells us the SID; it is
    # ours unless another call already holds it.
    return not sid or not Call.objects.filter(provider_sid=sid).exists()


def store_event(*, call: Call | None, kind: str, params: Mapping[str, str]) -> CallEvent | None:
    """Keep the raw event; None when this (SID, kind, sequence) was stored before."""
    sequence_number: int | None
    try:
        sequence_number = int(params["SequenceNumber"])
    except (KeyError, ValueError):
        sequence_number = None
    else:
        if sequence_number < 0:
            sequence_number = None
    # The unique constraint decides, in one statement: two deliveries racing each other
    # store one row, and the losing one leaves the caller's transaction usable.
    event = CallEvent(
        call=call,
        provider_sid=params.get("CallSid", "")[:64],
        kind=kind,
        sequence_number=sequence_number,
        payload=dict(params),
    )
    return event if insert_unless_taken(event) else None


def _status_facts(*, params: Mapping[str, str], status: str) -> dict[str, Any]:
    """What a status callback tells about the call, by Call field (absent ones left out)."""
    facts: dict[str, Any] = {}
    sid = params.get("CallSid", "")
    if sid:
        facts["provider_sid"] = sid
    if status == CallStatus.IN_PROGRESS:
        facts["answered_at"] = _timestamp(params.get("Timestamp"))
    if status in FINAL_STATUSES:
        facts["ended_at"] = _timestamp(params.get("Timestamp"))
    duration = _non_negative_int(params.get("CallDuration"))
    if duration is not None:
        facts["duration_seconds"] = duration
    if params.get("AnsweredBy") in AnsweredBy.values:
        facts["answered_by"] = params["AnsweredBy"]
    # No price: Twilio sends none in a callback (it is fetched later, see await_price).
    error_code = _non_negative_int(params.get("ErrorCode"))
    if error_code:
        facts["error_code"] = error_code
    error_message = params.get("ErrorMessage", "").strip()
    sip_code = _non_negative_int(params.get("SipResponseCode"))
    if not error_message and sip_code is not None and sip_code >= 400:
        error_message = f"SIP {sip_code}"
    if error_message:
        facts["error_message"] = truncate(error_message)
    return facts


def _fill_blanks(facts: Mapping[str, Any]) -> dict[str, Any]:
    """UPDATE expressions that set each field to its fact only where it is still blank."""
    fields: dict[str, Expression] = {}
    for name, value in facts.items():
        field = Call._meta.get_field(name)
        assert isinstance(field, Field)  # the facts are columns of the call
        expression: Expression = Value(value, output_field=field)
        if name == "ended_at":
            # Twilio's clock may run a little behind ours: never end before the dial.
            expression = Case(
                When(dialed_at__gt=value, then=F("dialed_at")),
                default=expression,
                output_field=field,
            )
        if field.null:
            fields[name] = Coalesce(F(name), expression, output_field=field)
        else:
            fields[name] = Case(
                When(**{name: ""}, then=expression), default=F(name), output_field=field
            )
    return fields


def _is_blank(value: object) -> bool:
    return value is None or value == ""


def _timestamp(value: str | None) -> datetime.datetime:
    """Twilio's RFC 2822 ``Timestamp``; now when it is missing or unreadable."""
    if value:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return timezone.now()


def _non_negative_int(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def await_price(*, call: Call) -> None:
    """Settle the price status of ``call``, which has just ended: a completed call with a
    SID waits for Twilio's price (``pending``, first asked ``PRICE_FIRST_CHECK`` after its
    end); any other is ``not-charged`` at once. A price already known is left alone."""
    if call.status == CallStatus.COMPLETED and call.provider_sid:
        ended_at = call.ended_at or timezone.now()
        fields = {
            "price_status": PriceStatus.PENDING,
            "price_check_at": ended_at + PRICE_FIRST_CHECK,
        }
    else:
        fields = {"price_status": PriceStatus.NOT_CHARGED, "price_check_at": None}
    Call.objects.filter(pk=call.pk, price_status=PriceStatus.PENDING, price__isnull=True).update(
        **fields
    )
    call.refresh_from_db(fields=["price_status", "price_check_at"])


def record_price(*, call_id: int, price: str | None, price_unit: str) -> bool:
    """Keep the price Twilio's Call resource gives the ended call ``call_id`` (a negative
    string, "-0.01300": the cost is kept, positive) as ``known``, and stop asking for it.

    False, and nothing written, when ``price`` is not a price or the call's price is
    already settled as known or not charged. Partner webhooks get call.priced.
    """
    from calls.outcomes import emit_call_priced  # outcomes builds on this module

    amount = _price(price)
    if amount is None:
        return False
    with transaction.atomic():
        kept = Call.objects.filter(
            pk=call_id, price_status__in=[PriceStatus.PENDING, PriceStatus.UNAVAILABLE]
        ).update(
            price=amount,
            price_unit=price_unit[:3].upper(),
            price_status=PriceStatus.KNOWN,
            price_check_at=None,
            updated_at=timezone.now(),
        )
        if kept:
            emit_call_priced(call=Call(pk=call_id))
    return bool(kept)


def _price(value: str | None) -> Decimal | None:
    """Twilio reports what a call cost as a negative amount; we keep the cost."""
    if not value:
        return None
    try:
        price = abs(Decimal(value)).quantize(Decimal("0.00001"))
    except (InvalidOperation, ValueError):
        return None
    return price if price.is_finite() and price < 10**5 else None


# --- Answering machines -------------------------------------------------------------------


def record_machine_detection(*, call_id: int, params: Mapping[str, str]) -> int | None:
    """Keep the AMD verdict; the kept verdict's id when it is the call's first and a
    machine answered the live call, which must be turned to its voicemail (or hung up):
    the caller then queues ``handle_machine`` (or, failing that, forgets the verdict with
    ``forget_machine_detection``). None otherwise."""
    answered_by = params.get("AnsweredBy", "")
    with transaction.atomic():
        call = one_or_none(Call.objects.select_for_update().filter(pk=call_id))
        if call is not None and call.provider_sid and params.get("CallSid") != call.provider_sid:
            call = None
        # Twilio sends one verdict per call: another is a retried delivery (it carries no
        # sequence number), kept but not acted on, or the voicemail would start over.
        repeated = (
            call is not None
            and CallEvent.objects.filter(call=call, kind=CallEvent.Kind.MACHINE_DETECTION).exists()
        )
        verdict = store_event(call=call, kind=CallEvent.Kind.MACHINE_DETECTION, params=params)
        if verdict is None or call is None or repeated:
            return None
        if answered_by in AnsweredBy.values:
            Call.objects.filter(pk=call.pk).update(
                answered_by=answered_by, updated_at=timezone.now()
            )
    return verdict.pk if answered_by in MACHINE_ANSWERS and call.is_live else None


def receive_machine_detection(*, call_id: int, params: Mapping[str, str]) -> None:
    """Keep the AMD verdict (``record_machine_detection``); a machine's live call is turned
    to its voicemail (or hung up) by a task, queued once this commits. The broker down,
    the error goes up (Twilio retries the callback) and the verdict is forgotten, so that
    the retry is acted on as the first delivery."""
    verdict_id = record_machine_detection(call_id=call_id, params=params)
    if verdict_id is not None:
        transaction.on_commit(lambda: _handle_machine_later(call_id, verdict_id))


def _handle_machine_later(call_id: int, verdict_id: int) -> None:
    from calls.tasks import handle_machine_task  # tasks build on this module

    try:
        handle_machine_task.delay(call_id)
    except kombu.exceptions.OperationalError:
        # Not queued (the broker is down): the verdict is forgotten, so that Twilio's retry
        # of this callback, which the error asks for, is acted on as the first delivery.
        forget_machine_detection(verdict_id=verdict_id)
        raise


def forget_machine_detection(*, verdict_id: int) -> None:
    """Drop a kept AMD verdict that could not be acted on, so that its next delivery is."""
    CallEvent.objects.filter(pk=verdict_id, kind=CallEvent.Kind.MACHINE_DETECTION).delete()


# --- Recordings -----------------------------------------------------------------------------


def record_recording(*, call_id: int, params: Mapping[str, str]) -> None:
    """Keep a recording callback; a completed recording's reference goes on the call."""
    with transaction.atomic():
        call = one_or_none(Call.objects.filter(pk=call_id))
        if call is not None and call.provider_sid and params.get("CallSid") != call.provider_sid:
            call = None
        if not store_event(call=call, kind=CallEvent.Kind.RECORDING, params=params):
            return
        if call is None or params.get("RecordingStatus") != "completed":
            return
        url = params.get("RecordingUrl", "")
        if not url.startswith(("https://", "http://")):
            logger.warning("Call %s: recording callback without a usable URL.", call.pk)
            return
        try:
            seconds = max(0, int(params.get("RecordingDuration", "")))
        except ValueError:
            seconds = None
        Call.objects.filter(pk=call.pk).update(
            recording_sid=params.get("RecordingSid", "")[:64],
            recording_url=truncate(url),
            recording_seconds=seconds,
            updated_at=timezone.now(),
        )
