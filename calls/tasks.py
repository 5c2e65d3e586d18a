"""Call tasks: thin, they take ids and call one service.

The services queue these tasks, so each task imports its service in its body; at the
top stand only what the decorators need (the telephony errors, the tick periods).
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from callcenter.backoff import backoff_seconds
from calls import telephony
from calls.dispatcher import DISPATCH_INTERVAL_SECONDS
from calls.prices import PRICE_TICK_SECONDS

logger = logging.getLogger(__name__)

# Dial tries of one call while Twilio is unreachable (each after the adapter's own
# retries), spaced by growing back-off, before the call is released.
PLACE_CALL_RETRIES = 4


@shared_task(expires=DISPATCH_INTERVAL_SECONDS)
def dispatch_calls_task() -> dict[str, int]:
    """Beat tick: due contacts become calls, each queued to be dialled.

    The dials of one tick are spread over the tick, so that Twilio sees an even rate
    rather than a burst each interval. A tick that waited past the next one in the
    queue expires: the next tick does its work with fresh figures.
    """
    from calls.dispatcher import dispatch

    result = dispatch()
    queue_dials(result.created)
    return {"created": len(result.created), "deferred": result.deferred, "closed": result.closed}


def queue_dials(call_ids: list[int]) -> None:
    """Queue ``place_call_task`` for each call, spread evenly over one dispatch interval,
    once the transaction that made them commits (at once outside one)."""
    spacing = DISPATCH_INTERVAL_SECONDS / max(1, len(call_ids))
    for index, call_id in enumerate(call_ids):
        # celery-types knows not the DjangoTask class Celery's Django fix-up gives tasks.
        place_call_task.apply_async_on_commit(  # type: ignore[attr-defined]
            (call_id,), countdown=round(index * spacing, 3)
        )


@shared_task(bind=True, acks_late=True, max_retries=PLACE_CALL_RETRIES)
def place_call_task(self: Task[..., str], call_id: int) -> str:
    """Dial one pending call. Twilio unreachable (and the call surely not created): try
    again later, then release the call and call the contact again later."""
    from calls import dialing

    result = dialing.place_call(call_id=call_id)
    if result == dialing.Dialed.RETRY:
        if self.request.retries >= PLACE_CALL_RETRIES:
            dialing.give_up(call_id=call_id)
            return "gave_up"
        raise self.retry(countdown=backoff_seconds(self.request.retries + 3, None))
    return result.value


@shared_task
def reconcile_calls_task() -> dict[str, int]:
    """Beat tick: settle calls a lost task or callback left behind (see reconcile_calls)."""
    from calls.dialing import reconcile_calls

    result = reconcile_calls()
    queue_dials(result.requeued)
    return {
        "requeued": len(result.requeued),
        "adopted": len(result.adopted),
        "released": len(result.released),
        "refreshed": len(result.refreshed),
    }


@shared_task(expires=PRICE_TICK_SECONDS)
def check_prices_task() -> dict[str, int]:
    """Beat tick: ask Twilio what ended calls cost, for those due (see check_prices). A
    tick that waited past the next one expires: the next does its work."""
    from calls.prices import check_prices

    result = check_prices()
    return {
        "known": len(result.known),
        "waiting": len(result.waiting),
        "unavailable": len(result.unavailable),
        "not_charged": len(result.not_charged),
    }


@shared_task(
    bind=True,
    autoretry_for=(telephony.TelephonyUnavailable,),
    retry_backoff=1,
    retry_backoff_max=8,
    max_retries=3,
)
def handle_machine_task(self: Task[..., str], call_id: int) -> str:
    """A machine answered: the live call gets its voicemail message, or is hung up."""
    from calls import flow

    try:
        return flow.handle_machine(call_id=call_id)
    except telephony.TelephonyRejected as error:
        # The call ended meanwhile (Twilio refuses to update an ended call): nothing to do.
        logger.info("Call %s: machine handling refused by Twilio: %s", call_id, error)
        return "refused"


@shared_task(
    autoretry_for=(telephony.TelephonyUnavailable,),
    retry_backoff=1,
    retry_backoff_max=8,
    max_retries=3,
)
def hang_up_ringing_task(call_id: int) -> str:
    """A contact rang us while a call of ours rang them: that call is hung up."""
    from calls import inbound

    try:
        return inbound.hang_up_ringing(call_id=call_id)
    except telephony.TelephonyRejected as error:
        # The call ended meanwhile (Twilio refuses to update an ended call): nothing to do.
        logger.info("Call %s: hang-up refused by Twilio: %s", call_id, error)
        return "refused"


# Tries of one conclusion (the model unavailable, or the database gone for a moment).
CONCLUDE_RETRIES = 4


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=CONCLUDE_RETRIES,
    # The database gone for a moment: conclude again (a conclusion run twice sends
    # nothing new); the partner would never hear of the call otherwise.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
)
def conclude_call_task(self: Task[..., str], call_id: int) -> str:
    """After a call: extract its outcome and summary, then tell whoever listens. A model
    that stays unreachable leaves the extraction failed with the reason."""
    from calls import conversation, outcomes

    try:
        return outcomes.conclude_call(call_id=call_id)
    except conversation.ConversationUnavailable as error:
        if self.request.retries < CONCLUDE_RETRIES:
            raise self.retry(countdown=30 * 2**self.request.retries) from error
        outcomes.extraction_unavailable(call_id=call_id, reason=error.reason)
        return "unavailable"
    except conversation.ConversationRejected as error:
        outcomes.extraction_unavailable(call_id=call_id, reason=error.reason)
        return "rejected"


@shared_task
def purge_expired_data_task() -> dict[str, int]:
    """Nightly (the "purge-expired-data" periodic task): delete each partner's transcripts,
    recordings, outcomes and uploads older than its retention periods (calls.retention)."""
    from calls.retention import purge_expired
    from campaigns.retention import Kind

    result = purge_expired()
    return {
        **{kind.value: result.total(kind) for kind in Kind},
        "recordings_left": result.total_left(Kind.RECORDINGS),
    }
