"""Writes on calls."""

from __future__ import annotations

import datetime
import enum
import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callcenter.metrics import CALLS_FINISHED, CONTACT_STATES
from calls import deadlines, telephony
from calls.models import (
    MACHINE_ANSWERS,
    Call,
    CallClip,
    CallDirection,
    CallStatus,
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
    template = campaign.template
    assert template is not None, "a call is only answered for a campaign with a template"
    if call.voice_id is None and speech.is_configured():
        # The call's first line chooses its voice, for the whole call (Call.voice).
        voice = voice_for_campaign(campaign=campaign)
        if voice is not None:
            Call.objects.filter(pk=call.pk, voice__isnull=True).update(voice=voice)
            call.voice = voice
    spoken = speech_for_line(
        text=text,
        voice=call.voice,
        language=template.language,
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


# Twilio errors after which calling the number again cannot help (Twilio's error
# dictionary, https://www.twilio.com/docs/api/errors): an invalid or unreachable number, or
# a destination the account may not call. Any other failure is retried per the campaign's policy.
PERMANENT_ERROR_CODES = frozenset({13224, 13227, 21211, 21215, 21217, 32205})


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
            "time": call.flags["callback_at"][:16].replace("T", " ")
        }
        return Contact.State.RETRY, max(callback_at, now), reason
    if call.flags.get("callback") is True:
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
    flags = call.flags
    transaction.on_commit(CALLS_FINISHED.labels(outcome="inbound").inc)
    talked = (
        call.status == CallStatus.COMPLETED
        and not flags.get("do_not_call")
        and not flags.get("opted_out")
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
    elif flags.get("transfer_failed") is True:
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
    value = call.flags.get("callback_at") if isinstance(call.flags, dict) else None
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
        if call.flags.get("transfer_failed") is True:
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
