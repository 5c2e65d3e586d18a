"""Writes on calls."""

from __future__ import annotations

import datetime
import email.utils
import enum
import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callcenter.metrics import CALL_STATUS_CHANGES, CALLS_FINISHED, CONTACT_STATES
from callcenter.queries import insert_unless_taken, one_or_none
from calls import deadlines, telephony
from calls.models import (
    AnsweredBy,
    Call,
    CallClip,
    CallDirection,
    CallEvent,
    CallStatus,
    PriceStatus,
)
from campaigns.models import (
    Campaign,
    Contact,
    ContactState,
    default_retry_policy,
    retry_policy_problems,
)
from campaigns.services import finish_contact_attempt
from voices import speech
from voices.clips import Speech, speech_for_line
from voices.services import voice_for_campaign

logger = logging.getLogger(__name__)


def record_speech_fallback(*, call: Call) -> None:
    """Count on ``call`` one line spoken with <Say> instead of its rendered clip."""
    Call.objects.filter(pk=call.pk).update(speech_fallbacks=F("speech_fallbacks") + 1)
    call.refresh_from_db(fields=["speech_fallbacks"])


def speech_for_call(
    *, call: Call, text: str, new_text: bool = False, deadline: float | None = None
) -> Speech:
    """How to speak ``text`` on ``call``: its campaign's voice, its template's language
    (``new_text``: a live AI line, see ``render_clip``), by ``deadline`` (a
    ``time.monotonic()`` instant; by default the deadline of the webhook being answered).

    A line that falls back to <Say> is counted on the call, where staff see it; the clip
    played (``Speech.clip_id``) is the caller's to keep with the turn it says.
    """
    campaign = call.campaign
    if call.voice_id is None and speech.is_configured():
        # The call's first line chooses its voice, for the whole call (Call.voice).
        voice = voice_for_campaign(campaign=campaign)
        if voice is not None:
            Call.objects.filter(pk=call.pk, voice__isnull=True).update(voice=voice)
            call.voice = voice
    spoken = speech_for_line(
        text=text,
        voice=call.voice,
        language=campaign.template.language,
        new_text=new_text,
        deadline=deadlines.current() if deadline is None else deadline,
    )
    if spoken.is_fallback:
        record_speech_fallback(call=call)
    return spoken


def record_plays(*, call: Call) -> None:
    """Record each clip ``call``'s turns played (``Turn.clips``) as the call's, once each:
    its audio, and its share of each clip's characters. Run when the call ends, and again
    at its conclusion (for a reply recorded after the end); a clip kept already is kept
    once."""
    clip_ids = [
        clip_id
        for clips in call.turns.exclude(clips=[]).values_list("clips", flat=True)
        for clip_id in clips
        if isinstance(clip_id, int)
    ]
    CallClip.objects.bulk_create(
        [CallClip(call_id=call.pk, clip_id=clip_id) for clip_id in dict.fromkeys(clip_ids)],
        ignore_conflicts=True,
    )


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

MACHINE_ANSWERS = frozenset(
    {
        AnsweredBy.MACHINE_START,
        AnsweredBy.MACHINE_END_BEEP,
        AnsweredBy.MACHINE_END_SILENCE,
        AnsweredBy.MACHINE_END_OTHER,
        AnsweredBy.FAX,
    }
)

# Twilio errors after which calling the number again cannot help (Twilio's error
# dictionary, https://www.twilio.com/docs/api/errors): an invalid or unreachable number, or
# a destination the account may not call. Any other failure is retried per the campaign's policy.
PERMANENT_ERROR_CODES = frozenset({13224, 13227, 21211, 21215, 21217, 32205})

# Twilio never puts a price in a callback: its Call resource gets one some seconds to
# minutes after the call ends (reference/vendors.md), and busy, unanswered, failed and
# canceled calls are not charged (support.twilio.com/hc/en-us/articles/223132547). A
# completed call is first asked for its price this long after its end (by the price tick,
# dialing.check_prices), soon enough for a normal call's price to be kept within a minute.
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
    on (``finish_call``), once, and queues the call's conclusion (again when Twilio
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
                transaction.on_commit(lambda: _conclude_later(call.pk))
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
            transaction.on_commit(lambda: _conclude_later(call.pk))
    return call


def _conclude_later(call_id: int) -> None:
    from calls.tasks import conclude_call_task  # tasks build on this module

    conclude_call_task.delay(call_id)


def _callback_matches(*, call: Call, sid: str) -> bool:
    if len(sid) > Call._meta.get_field("provider_sid").max_length:
        return False  # not a Twilio SID, and it would not fit the column
    if call.provider_sid:
        return sid == call.provider_sid
    # The `initiated` callback can overtake the API response that tells us the SID; it is
    # ours unless another call already holds it.
    return not sid or not Call.objects.filter(provider_sid=sid).exists()


def store_event(*, call: Call | None, kind: str, params: Mapping[str, str]) -> CallEvent | None:
    """Keep the raw event; None when this (SID, kind, sequence) was stored before."""
    try:
        sequence_number: int | None = int(params["SequenceNumber"])
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
        facts["error_message"] = error_message[:500]
    return facts


def _fill_blanks(facts: Mapping[str, Any]) -> dict[str, Any]:
    """UPDATE expressions that set each field to its fact only where it is still blank."""
    fields = {}
    for name, value in facts.items():
        field = Call._meta.get_field(name)
        expression = Value(value, output_field=field)
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


# --- After the call -------------------------------------------------------------------------


class CallOutcome(enum.StrEnum):
    """What an ended call of ours means for its contact (``finish_call``). The values are
    the keys of campaigns' retry policies and the labels of the finished-calls metric."""

    ANSWERED = "answered"  # a person talked
    VOICEMAIL = "voicemail"  # a machine answered
    NO_ANSWER = "no-answer"  # nobody answered, or picked up and never said a word
    BUSY = "busy"
    FAILED = "failed"  # Twilio could not connect it (a fault that may pass)
    REJECTED = "rejected"  # Twilio cannot call the number (PERMANENT_ERROR_CODES)
    CANCELED = "canceled"  # we hung up before an answer: counts against the campaign only
    TRANSFER_FAILED = "transfer-failed"  # talked, but nobody took the transfer asked for


def finish_call(*, call: Call) -> ContactState | None:
    """Move the ended ``call``'s contact on from ``calling``: done, retry, exhausted, failed
    (an inbound call: see ``_finish_inbound_call``).

    A compare-and-set from ``calling`` (``finish_contact_attempt``): returns the contact's
    new state, or None when the contact had already moved on (nothing is written then).
    The call's outcome and the contact's new state are counted when the transaction
    commits.
    """
    if call.is_inbound:
        return _finish_inbound_call(call=call)
    contact = call.contact
    campaign = call.campaign
    now = timezone.now()
    next_attempt_at = None
    outcome = _outcome(call)
    transaction.on_commit(CALLS_FINISHED.labels(outcome=outcome).inc)
    talked = outcome in (CallOutcome.ANSWERED, CallOutcome.TRANSFER_FAILED)
    asked = _asked_callback(call, now) if talked else None
    state: ContactState
    if asked is not None:
        state, next_attempt_at, reason = asked
    elif outcome == CallOutcome.ANSWERED:
        state, reason = Contact.State.DONE, _("Answered.")
    elif outcome == CallOutcome.REJECTED:
        state = Contact.State.FAILED
        reason = _("Twilio cannot call this number (error %(code)s): %(detail)s") % {
            "code": call.error_code,
            "detail": (call.error_code is not None and telephony.REASONS.get(call.error_code))
            or call.error_message
            or "-",
        }
    else:
        rule = _retry_rule(campaign, outcome)
        # The dispatcher counts attempts on the contact; the call's own number is a floor.
        attempts = max(contact.attempts, call.attempt or 0)
        label = _OUTCOME_LABELS[outcome]
        if (
            outcome != CallOutcome.CANCELED
            and _calls_with_outcome(call, outcome) >= rule["max_attempts"]
        ):
            state = Contact.State.EXHAUSTED
            reason = _("%(outcome)s: no more calls after %(count)s with this outcome.") % {
                "outcome": label,
                "count": rule["max_attempts"],
            }
        elif attempts >= campaign.effective_max_attempts:
            state = Contact.State.EXHAUSTED
            reason = _("%(outcome)s: no more calls after %(count)s attempts.") % {
                "outcome": label,
                "count": attempts,
            }
        else:
            state = Contact.State.RETRY
            next_attempt_at = now + datetime.timedelta(minutes=rule["delay_minutes"])
            reason = _("%(outcome)s: calling again later.") % {"outcome": label}
    if not finish_contact_attempt(
        contact=contact, to=state, reason=reason, next_attempt_at=next_attempt_at, now=now
    ):
        logger.info(
            "Call %s ended but contact %s was not calling; left as is.", call.pk, contact.pk
        )
        return None
    transaction.on_commit(CONTACT_STATES.labels(state=state).inc)
    return state


def _asked_callback(
    call: Call, now: datetime.datetime
) -> tuple[ContactState, datetime.datetime, str] | None:
    """The retry the callee asked for in the conversation (state, when, reason): at the
    time they named, or after the campaign's no-answer delay for a scripted "call me
    another day"; None when they asked for none."""
    callback_at = _callback_at(call)
    if callback_at is not None:
        # The callee asked to be called at that time; the window still gates it then.
        reason = _("Asked to be called back at %(time)s.") % {
            "time": call.outcome["callback_at"][:16].replace("T", " ")
        }
        return Contact.State.RETRY, max(callback_at, now), reason
    if (call.outcome or {}).get("callback") is True:
        # A scripted "call me another day" names no time: the campaign's retry delay.
        delay = _retry_rule(call.campaign, CallOutcome.NO_ANSWER)["delay_minutes"]
        reason = _("Asked to be called back another time.")
        return Contact.State.RETRY, now + datetime.timedelta(minutes=delay), reason
    return None


def _finish_inbound_call(*, call: Call) -> ContactState | None:
    """A contact rang us back (``call`` is inbound) and the call is over.

    Once they said something (the conversation happened), the contact gets its final
    state as after a conversation of ours, and the retries it was waiting for are
    cancelled, from any state but an opt-out (which stands whatever was said after it):
    done; a retry at the time they asked for (or another day); after the no-answer delay
    when nobody took the transfer they asked for. A call that ended
    before they said a word, on the do-not-call path, or with an opt-out (already
    applied) leaves the contact as it is. Returns the contact's new state, or None.
    """
    contact = call.contact
    now = timezone.now()
    outcome = call.outcome or {}
    transaction.on_commit(CALLS_FINISHED.labels(outcome="inbound").inc)
    talked = (
        call.status == CallStatus.COMPLETED
        and not outcome.get("do_not_call")
        and not outcome.get("opted_out")
        and call.turns.filter(role="caller").exists()
    )
    if not talked:
        logger.info("Inbound call %s ended without a conversation; contact left as is.", call.pk)
        return None
    asked = _asked_callback(call, now)
    state: ContactState
    next_attempt_at: datetime.datetime | None
    if asked is not None:
        state, next_attempt_at, reason = asked
    elif outcome.get("transfer_failed") is True:
        delay = _retry_rule(call.campaign, CallOutcome.NO_ANSWER)["delay_minutes"]
        state, next_attempt_at = Contact.State.RETRY, now + datetime.timedelta(minutes=delay)
        reason = _("%(outcome)s: calling again later.") % {
            "outcome": _OUTCOME_LABELS[CallOutcome.TRANSFER_FAILED]
        }
    else:
        state, next_attempt_at = Contact.State.DONE, None
        reason = _("Called us back and talked.")
    if not finish_contact_attempt(
        contact=contact,
        to=state,
        reason=reason,
        next_attempt_at=next_attempt_at,
        inbound=True,
        now=now,
    ):
        logger.info("Inbound call %s ended; contact %s opted out, left as is.", call.pk, contact.pk)
        return None
    transaction.on_commit(CONTACT_STATES.labels(state=state).inc)
    return state


def _callback_at(call: Call) -> datetime.datetime | None:
    """The time the callee asked to be called back at (an aware ISO time), if any."""
    value = (call.outcome or {}).get("callback_at") if isinstance(call.outcome, dict) else None
    try:
        at = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


_OUTCOME_LABELS = {
    CallOutcome.BUSY: gettext_lazy("Busy"),
    CallOutcome.NO_ANSWER: gettext_lazy("No answer"),
    CallOutcome.FAILED: gettext_lazy("Call failed"),
    CallOutcome.VOICEMAIL: gettext_lazy("Voicemail"),
    CallOutcome.CANCELED: gettext_lazy("Call canceled"),
    CallOutcome.TRANSFER_FAILED: gettext_lazy("Transfer not taken"),
}


def _retry_rule(campaign: Campaign, outcome: CallOutcome) -> dict[str, int]:
    """The campaign's delay and attempts for ``outcome``; a cancelled call, and one whose
    transfer nobody took, waits as an unanswered one. An entry missing from a policy
    saved unchecked takes the default."""
    key = (
        CallOutcome.NO_ANSWER
        if outcome in (CallOutcome.CANCELED, CallOutcome.TRANSFER_FAILED)
        else outcome
    )
    policy = campaign.retry_policy if isinstance(campaign.retry_policy, dict) else {}
    rule = policy.get(key)
    if isinstance(rule, dict) and not retry_policy_problems({**default_retry_policy(), key: rule}):
        return rule
    logger.warning("Campaign %s has no valid retry policy for %s; default used.", campaign.pk, key)
    return default_retry_policy()[key]


def _outcome(call: Call) -> CallOutcome:
    """What an ended call means for its contact."""
    if call.status == CallStatus.COMPLETED:
        if call.answered_by in MACHINE_ANSWERS:
            return CallOutcome.VOICEMAIL
        if (call.dialogue or {}).get("closed") == "silence" and not call.turns.filter(
            role="caller"
        ).exists():
            # Picked up and never said a word: nobody was reached; called again as such.
            return CallOutcome.NO_ANSWER
        if (call.outcome or {}).get("transfer_failed") is True:
            return CallOutcome.TRANSFER_FAILED
        return CallOutcome.ANSWERED
    if call.status == CallStatus.FAILED and call.error_code in PERMANENT_ERROR_CODES:
        return CallOutcome.REJECTED
    if call.status == CallStatus.CANCELED:
        # We hung up before an answer (a paused campaign, a closing window): no fault of
        # the callee's, so it counts only against the campaign's attempts.
        return CallOutcome.CANCELED
    # busy, no-answer, failed: the final statuses left, spelled as the outcomes are.
    return CallOutcome(call.status)


def _calls_with_outcome(call: Call, outcome: CallOutcome) -> int:
    # The calls we made: a contact ringing us back is no attempt of ours.
    calls = Call.objects.filter(contact_id=call.contact_id, direction=CallDirection.OUTBOUND)
    if outcome == CallOutcome.VOICEMAIL:
        calls = calls.filter(status=CallStatus.COMPLETED, answered_by__in=MACHINE_ANSWERS)
    elif outcome == CallOutcome.TRANSFER_FAILED:
        calls = calls.with_outcome("transfer_failed")
    else:
        calls = calls.filter(status=outcome)
    return calls.count()
