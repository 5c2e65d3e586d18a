"""Placing calls: a pending call row becomes a call Twilio rings, or is released.

``place_call`` claims the call (a compare-and-set from ``pending`` to ``dialing``, so a
call is dialled once however many tasks carry its id), checks once more that the contact
may be called now, and asks Twilio to dial. Every way that can end leaves the call and its
contact in a defined state (see ``Dialed``); the re-check's decision goes into the audit
trail (skipped, or dialled with the rules version and the checks passed).
``reconcile_calls`` finds what a crash, a lost task or a lost callback left behind and
settles it with Twilio's own record, and ``check_prices`` (calls/prices.py) asks Twilio
what each ended call cost.
"""

from __future__ import annotations

import copy
import datetime
import email.utils
import enum
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from callcenter.metrics import CALLS_PLACED
from callcenter.text import truncate
from calls import decisions, pacing, telephony
from calls.callbacks import FINAL_STATUSES, await_price, record_call_status, record_price
from calls.links import callback_url, webhook_url
from calls.models import Call, CallStatus, PriceStatus

# Asking Twilio what calls cost moved to calls/prices.py; its names stay importable here.
from calls.prices import PRICE_BATCH as PRICE_BATCH
from calls.prices import PRICE_CLAIM as PRICE_CLAIM
from calls.prices import PRICE_GIVE_UP as PRICE_GIVE_UP
from calls.prices import PRICE_RETRY as PRICE_RETRY
from calls.prices import PRICE_RETRY_MAX as PRICE_RETRY_MAX
from calls.prices import PRICE_TICK_SECONDS as PRICE_TICK_SECONDS
from calls.prices import PriceChecks as PriceChecks
from calls.prices import check_prices as check_prices
from calls.services import finish_call
from campaigns.eligibility import Eligibility, evaluate, load_eligibility_facts
from campaigns.models import Campaign, Contact, MachineAction
from campaigns.services import CampaignStateError, pause_campaign, release_contact

logger = logging.getLogger(__name__)

# A pending call whose task has not claimed it after this long lost its task: queue again.
PENDING_GRACE = datetime.timedelta(minutes=2)
# Calls looked at per reconciliation tick, per kind, so that one tick stays short.
RECONCILE_BATCH = 200
# After a call's longest possible life (ring timeout + time limit), how long to wait for
# its final callback before asking Twilio.
FINAL_CALLBACK_GRACE = datetime.timedelta(minutes=2)
# How far Twilio's clock may be from ours when looking a call up by its creation time.
CLOCK_SKEW = datetime.timedelta(minutes=2)


class Dialed(enum.StrEnum):
    """How one ``place_call`` ended."""

    PLACED = "placed"  # Twilio accepted the call; callbacks take it from here
    NOT_PENDING = "not_pending"  # another task claimed it, or it was settled: nothing done
    RELEASED = "released"  # not dialable any more: not placed, the contact put off or closed
    REJECTED = "rejected"  # Twilio refused the number for good: failed, the contact moved on
    HELD = "held"  # a problem of the campaign or account: not placed, the contact waits
    RETRY = "retry"  # Twilio unreachable, the call surely not created: pending again
    UNCERTAIN = "uncertain"  # Twilio may have created it: dialing until reconciled


def place_call(*, call_id: int) -> Dialed:
    """Dial the pending call ``call_id`` (see the module docstring and ``Dialed``)."""
    now = timezone.now()
    claimed = Call.objects.filter(pk=call_id, status=CallStatus.PENDING).update(
        status=CallStatus.DIALING, dialed_at=now, updated_at=now
    )
    if not claimed:
        return _counted(Dialed.NOT_PENDING)
    call = Call.objects.select_related("campaign__partner", "campaign__template", "contact").get(
        pk=call_id
    )
    campaign = call.campaign
    contact = _as_before_dispatch(call)
    # What eligibility_for does, keeping the facts: the dial's audit entry names them.
    facts = load_eligibility_facts(contact=contact, now=now, exclude_call_id=call.pk)
    verdict = evaluate(contact=contact, campaign=campaign, now=now, **facts)
    if not verdict.dialable:
        reasons = "; ".join(reason.message for reason in verdict.reasons)
        logger.info("Call %s not placed: %s", call.pk, reasons)
        _release(call, reason=_("Not placed: %(reasons)s.") % {"reasons": reasons}, verdict=verdict)
        return _counted(Dialed.RELEASED)
    # Stored before the carrier's request: a call found at the carrier later says which
    # rules allowed it even when the request's answer was lost.
    Call.objects.filter(pk=call.pk).update(rules_version=verdict.rules_version)
    call.rules_version = verdict.rules_version
    try:
        provider_call = telephony.create_call(
            to=call.to_number,
            from_=call.from_number or None,
            url=webhook_url("answer", call.pk),
            fallback_url=webhook_url("fallback", call.pk),
            status_callback=callback_url("status", call.pk),
            machine_detection=machine_detection_for(campaign),
            async_amd_callback=callback_url("amd", call.pk),
            timeout=campaign.ring_timeout_seconds,
            time_limit=campaign.time_limit_seconds,
            # Never from the answer: a recording campaign's calls are recorded once the
            # callee has heard the announcement (calls.recordings.start_after_announcement).
            record=False,
            sandbox_persona=_sandbox_persona(call),
        )
    except telephony.TelephonyRejected as error:
        return _counted(_rejected(call, error))
    except telephony.TelephonyUnavailable as error:
        return _counted(_unavailable(call, error))
    _save_sid(
        call,
        provider_call.sid,
        dialed=decisions.dialed(
            call=call,
            contact=contact,
            campaign=campaign,
            verdict=verdict,
            history=facts["history"],
            now=now,
        ),
    )
    pacing.clear_backoff(campaign.pk)
    logger.info("Call %s placed as %s", call.pk, provider_call.sid)
    return _counted(Dialed.PLACED)


def machine_detection_for(campaign: Campaign) -> str:
    """Twilio's AMD mode: wait for the greeting's end when a message will be left."""
    if campaign.machine_action == MachineAction.VOICEMAIL:
        return "DetectMessageEnd"
    return "Enable"


def give_up(*, call_id: int) -> bool:
    """Release the pending call ``call_id`` after its dial retries ran out: Twilio stayed
    unreachable. The contact is called again later; False when the call had moved on."""
    call = Call.objects.select_related("campaign", "contact").get(pk=call_id)
    released = _release(
        call,
        reason=_("Not placed: Twilio could not be reached; calling again later."),
        due_at=timezone.now() + pacing.UNAVAILABLE_RETRY_DELAY,
    )
    if released:
        logger.warning("Call %s not placed: Twilio stayed unreachable.", call_id)
    return released


def _counted(result: Dialed) -> Dialed:
    CALLS_PLACED.labels(result=result.value).inc()
    return result


def _as_before_dispatch(call: Call) -> Contact:
    """The call's contact as eligibility should see it: as it was when the dispatcher
    picked it, before that attempt was counted on it. A contact that moved on meanwhile
    (staff closed it, say) is seen as it is."""
    contact = copy.copy(call.contact)
    contact.campaign = call.campaign
    if contact.state == Contact.State.CALLING:
        contact.state = Contact.State.PENDING
        contact.attempts = max(0, contact.attempts - 1)
        contact.next_attempt_at = None
    return contact


def _sandbox_persona(call: Call) -> str | None:
    return telephony.callee_persona(call.contact, call.campaign, attempt=call.attempt)


def _save_sid(call: Call, sid: str, *, dialed: audit.Event | None = None) -> None:
    """Keep the SID Twilio gave the call; its `initiated` callback may have come first.
    ``dialed``: the contact's audit entry, recorded with the SID (default: the call as
    reconciliation found it)."""
    with transaction.atomic():
        kept = Call.objects.filter(pk=call.pk, provider_sid__isnull=True).update(provider_sid=sid)
        Call.objects.filter(pk=call.pk, status=CallStatus.DIALING).update(
            status=CallStatus.QUEUED, updated_at=timezone.now()
        )
        # Twilio accepted the dial request (or reconciliation found the call there first):
        # a status callback may have kept the SID already, the dial is still this one's.
        if dialed is not None:
            audit.record_many([dialed])
        elif kept:
            audit.record_many([decisions.adopted(call=call)])


def _rejected(call: Call, error: telephony.TelephonyRejected) -> Dialed:
    campaign = call.campaign
    if error.is_auth_failure or (
        isinstance(error, telephony.TelephonyNotConfigured) and not telephony.is_configured()
    ):
        _release(call, reason=_("Not placed: %(reason)s") % {"reason": error.reason})
        _pause_running_campaigns(error.reason)
        return Dialed.HELD
    if error.code in telephony.CALLER_ID_CODES or isinstance(
        error, telephony.TelephonyNotConfigured
    ):
        _release(call, reason=_("Not placed: %(reason)s") % {"reason": error.reason})
        _pause(campaign, error.reason)
        return Dialed.HELD
    if error.is_concurrency_limit:
        wait = pacing.back_off_campaign(campaign.pk)
        _release(
            call,
            reason=_("Not placed: %(reason)s") % {"reason": error.reason},
            due_at=timezone.now() + wait,
        )
        logger.warning(
            "Twilio's concurrency limit (10004): campaign %s backs off %s s.",
            campaign.pk,
            int(wait.total_seconds()),
        )
        return Dialed.HELD
    now = timezone.now()
    with transaction.atomic():
        failed = Call.objects.filter(pk=call.pk, status=CallStatus.DIALING).update(
            status=CallStatus.FAILED,
            error_code=error.code,
            error_message=truncate(error.reason),
            ended_at=now,
            updated_at=now,
        )
        if failed:
            call.refresh_from_db()
            await_price(call=call)
            finish_call(call=call)
    logger.info("Call %s refused by Twilio (%s): %s", call.pk, error.code, error.provider_message)
    return Dialed.REJECTED


def _unavailable(call: Call, error: telephony.TelephonyUnavailable) -> Dialed:
    if error.possibly_created:
        # A second request could ring the same person twice: reconciliation asks Twilio.
        logger.warning("Call %s: Twilio may have created it (%s); reconciling.", call.pk, error)
        return Dialed.UNCERTAIN
    Call.objects.filter(pk=call.pk, status=CallStatus.DIALING, provider_sid__isnull=True).update(
        status=CallStatus.PENDING, dialed_at=None, updated_at=timezone.now()
    )
    logger.warning("Call %s: Twilio unreachable (%s); dialling again later.", call.pk, error)
    return Dialed.RETRY


def _release(
    call: Call,
    *,
    reason: str,
    verdict: Eligibility | None = None,
    due_at: datetime.datetime | None = None,
) -> bool:
    """Settle ``call`` as not placed (Twilio never rang it) and give its contact back
    (``release_contact``: the attempt uncounted, waiting again or put off by ``verdict``).
    False when the call was not pending or dialing without a SID any more (nothing is
    written then).
    """
    now = timezone.now()
    with transaction.atomic():
        released = Call.objects.filter(
            pk=call.pk,
            status__in=[CallStatus.PENDING, CallStatus.DIALING],
            provider_sid__isnull=True,
        ).update(
            status=CallStatus.NOT_PLACED,
            error_message=truncate(reason),
            ended_at=now,
            updated_at=now,
            # Twilio never had it: nothing to charge, nothing to ask.
            price_status=PriceStatus.NOT_CHARGED,
            price_check_at=None,
        )
        if not released:
            return False
        # A contact no longer calling moved on meanwhile: whoever moved it decided its state.
        moved = release_contact(
            contact_id=call.contact_id, reason=reason, verdict=verdict, due_at=due_at, now=now
        )
        if moved and verdict is not None:
            _record_skipped(call, verdict)
    return True


def _record_skipped(call: Call, verdict: Eligibility) -> None:
    """The re-check before dialling refused the contact: the audit entry, last in the
    release's transaction (the chain's head stays locked until it commits)."""
    state = Contact.objects.filter(pk=call.contact_id).values_list("state", flat=True).first()
    audit.record_many(
        [
            decisions.skipped(
                contact=call.contact,
                campaign=call.campaign,
                verdict=verdict,
                stage="pre_dial",
                state=state or "",
                call_id=call.pk,
            )
        ]
    )


def _pause(campaign: Campaign, reason: str) -> None:
    try:
        pause_campaign(campaign=campaign, reason=reason)
    except CampaignStateError:
        return  # already paused or ended by someone else
    logger.error("Campaign %s paused: %s", campaign.pk, reason)


def _pause_running_campaigns(reason: str) -> None:
    """A fault of the account (bad credentials) would fail every call alike: pause them
    all with the reason rather than fail each contact."""
    for campaign in Campaign.objects.running():
        _pause(campaign, reason)


# --- Reconciliation ---------------------------------------------------------------------


@dataclass
class Reconciled:
    """One reconciliation pass, by call id."""

    requeued: list[int] = field(default_factory=list)  # pending calls whose task was lost
    adopted: list[int] = field(default_factory=list)  # found at Twilio: SID kept
    released: list[int] = field(default_factory=list)  # never reached Twilio: not placed
    refreshed: list[int] = field(default_factory=list)  # status taken from Twilio


def reconcile_calls(*, now: datetime.datetime | None = None) -> Reconciled:
    """Settle calls stuck where only a lost task or callback leaves them.

    - Pending past ``PENDING_GRACE``: their task was lost; returned for queueing again
      (the claim makes that safe).
    - Dialing without a SID past the longest a dial request can take: the worker died
      mid-dial or Twilio's answer was lost. Twilio is asked for a call to that number
      created since; found, its SID is kept and its status folded in; not found, the call
      is released and the contact waits again.
    - Live with a SID past ring timeout + time limit (Twilio has ended it for sure): the
      final status is fetched from Twilio and folded in as a callback would be.
    """
    now = now or timezone.now()
    result = Reconciled()
    result.requeued = list(
        Call.objects.filter(status=CallStatus.PENDING, created_at__lt=now - PENDING_GRACE)
        .order_by("created_at")
        .values_list("pk", flat=True)[:RECONCILE_BATCH]
    )
    dial_deadline = now - _longest_dial()
    for call in (
        Call.objects.filter(
            status=CallStatus.DIALING, provider_sid__isnull=True, dialed_at__lt=dial_deadline
        )
        .select_related("campaign", "contact")
        .order_by("dialed_at")[:RECONCILE_BATCH]
    ):
        _reconcile_dialing(call, result)
    for call in (
        Call.objects.live()
        .filter(~Q(provider_sid=None), dialed_at__lt=now - FINAL_CALLBACK_GRACE)
        .select_related("campaign")
        .order_by("dialed_at")[: RECONCILE_BATCH * 5]
    ):
        campaign = call.campaign
        longest = datetime.timedelta(
            seconds=campaign.ring_timeout_seconds + campaign.time_limit_seconds
        )
        if call.dialed_at + longest + FINAL_CALLBACK_GRACE < now:
            _refresh(call, result)
            if len(result.refreshed) >= RECONCILE_BATCH:
                break
    return result


def _longest_dial() -> datetime.timedelta:
    """The longest a dial request (with its retries) may keep a call in ``dialing``."""
    attempts = settings.TWILIO_MAX_RETRIES + 1
    return datetime.timedelta(seconds=attempts * (settings.TWILIO_TIMEOUT + 8) + 60)


def _reconcile_dialing(call: Call, result: Reconciled) -> None:
    assert call.dialed_at is not None  # picked by its dialed_at
    try:
        found = telephony.find_calls(
            to=call.to_number,
            from_=call.from_number or None,
            created_after=call.dialed_at - CLOCK_SKEW,
        )
    except (telephony.TelephonyRejected, telephony.TelephonyUnavailable) as error:
        logger.warning("Call %s: could not look it up at Twilio (%s); next time.", call.pk, error)
        return
    known = set(
        Call.objects.filter(provider_sid__in=[c.sid for c in found]).values_list(
            "provider_sid", flat=True
        )
    )
    unclaimed = [provider_call for provider_call in found if provider_call.sid not in known]
    if unclaimed:
        provider_call = unclaimed[0]
        _save_sid(call, provider_call.sid)
        _fold(call.pk, provider_call)
        result.adopted.append(call.pk)
        logger.warning("Call %s: found at Twilio as %s; kept.", call.pk, provider_call.sid)
        return
    if _release(
        call,
        reason=_("Not placed: the dial request never reached Twilio; calling again later."),
    ):
        result.released.append(call.pk)
        logger.warning("Call %s: never reached Twilio; released.", call.pk)


def _refresh(call: Call, result: Reconciled) -> None:
    assert call.provider_sid is not None  # picked for having one
    try:
        provider_call = telephony.fetch_call(sid=call.provider_sid)
    except telephony.TelephonyUnavailable as error:
        logger.warning("Call %s: could not fetch it from Twilio (%s); next time.", call.pk, error)
        return
    except telephony.TelephonyRejected as error:
        if error.status != 404:
            logger.warning("Call %s: Twilio refused the fetch (%s).", call.pk, error)
            return
        # Twilio does not know the SID: the call cannot be going on.
        provider_call = telephony.ProviderCall(
            sid=call.provider_sid,
            status=CallStatus.FAILED,
            error_code=error.code,
            error_message=error.provider_message,
        )
    _fold(call.pk, provider_call)
    result.refreshed.append(call.pk)


def _fold(call_id: int, provider_call: telephony.ProviderCall) -> None:
    """Apply what Twilio's Call resource says as a status callback would be applied; a
    price it already shows is kept at once (a callback never carries one)."""
    if provider_call.status not in FINAL_STATUSES and provider_call.status not in (
        CallStatus.QUEUED,
        CallStatus.RINGING,
        CallStatus.IN_PROGRESS,
    ):
        return
    params = {
        "CallSid": provider_call.sid,
        "CallStatus": provider_call.status,
        "CallbackSource": "reconciliation",
    }
    if provider_call.ended_at is not None and provider_call.status in FINAL_STATUSES:
        # When Twilio ended the call, not when we asked: a late callback cannot fix it.
        params["Timestamp"] = email.utils.format_datetime(provider_call.ended_at)
    optional = {
        "CallDuration": provider_call.duration,
        "AnsweredBy": provider_call.answered_by,
        "ErrorCode": provider_call.error_code,
        "ErrorMessage": provider_call.error_message,
    }
    params.update({name: str(value) for name, value in optional.items() if value not in (None, "")})
    call = record_call_status(call_id=call_id, params=params)
    if call is not None and call.status == CallStatus.COMPLETED and provider_call.price:
        record_price(
            call_id=call.pk, price=provider_call.price, price_unit=provider_call.price_unit
        )
