"""What a relay call's socket writes: the session opened (its time to first audio), the
replies streamed and what they did, the lines the caller cut short, the socket dropped.

Plain blocking functions: the session runs them in the webhooks' threads, as on the
relay socket (``calls.relay.session.on_socket``), so that what the flow answers is a plan
for the socket.
"""

from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.utils import timezone

from calls import conversation, model_turns
from calls.dialogue import Dialogue, add_turn, load_call, lock_call, save_dialogue
from calls.model_turns import PendingReply, pending_reply
from calls.models import Call, Turn
from campaigns.models import ConversationTransport

logger = logging.getLogger(__name__)


def opened(call_id: int, *, call_sid: str, contact: str) -> str | None:
    """The greeting Twilio says as the session opens (``welcomeGreeting``), when the
    socket belongs to live relay call ``call_id`` (its SID and the contact of its
    ``<Parameter>`` agree); None otherwise. The call's time to first audio is kept: Twilio
    starts the greeting as the session opens."""
    call = load_call(call_id, {"CallSid": call_sid})
    if call is None or not call.is_live or call.transport != ConversationTransport.RELAY:
        return None
    if contact and contact != str(call.contact_id):
        logger.warning("Relay socket for call %s names contact %s.", call_id, contact)
        return None
    dialogue = Dialogue.from_json(call.dialogue)
    if dialogue.ended:
        return None
    answered = _moment(call.dialogue.get("answer_received_at"))
    if answered is not None and call.first_audio_ms is None:
        waited = (timezone.now() - answered).total_seconds()
        Call.objects.filter(pk=call.pk, first_audio_ms__isnull=True).update(
            first_audio_ms=max(round(waited * 1000), 0)
        )
    first = call.turns.filter(role=Turn.Role.AGENT).order_by("sequence").first()
    return first.text if first is not None else ""


def answered_in(call_id: int, response_ms: int) -> None:
    """The flow's own line (not the model's) answered the caller's words: its response
    time goes on the last line we said."""
    last = Turn.objects.filter(call_id=call_id, role=Turn.Role.AGENT).order_by("-sequence")
    turn = last.values_list("pk", flat=True).first()
    if turn is not None:
        Turn.objects.filter(pk=turn, response_ms__isnull=True).update(response_ms=response_ms)


def record_streamed(
    call: Call, answer: conversation.Reply, *, model_ms: int, response_ms: int | None
) -> str:
    """Record a streamed reply and act on it; the plan of what follows."""
    return model_turns.record_streamed_reply(
        call, answer, model_ms=model_ms, response_ms=response_ms
    ).twiml


def heard_only(call: Call, heard: str, *, response_ms: int | None) -> None:
    """A reply stopped while it was written (the caller spoke over it, or the socket
    closed): the transcript keeps what was heard of it, marked as interrupted; its tools
    were never given, so nothing else changes."""
    with transaction.atomic():
        lock_call(call, "dialogue")
        add_turn(
            call,
            role=Turn.Role.AGENT,
            text=heard,
            interrupted=True,
            response_ms=response_ms,
        )


def cut_last_line(call_id: int, heard: str) -> None:
    """The caller spoke over our last line, recorded whole, having heard ``heard`` of it:
    the transcript (and so the model's next turn) keeps only that."""
    with transaction.atomic():
        last = (
            Turn.objects.select_for_update()
            .filter(call_id=call_id, role=Turn.Role.AGENT)
            .order_by("-sequence")
            .first()
        )
        if last is None or last.interrupted:
            return
        Turn.objects.filter(pk=last.pk).update(text=heard.strip(), interrupted=True)


def model_failed(call: Call, *, retrying: bool, said: str) -> str:
    """The model failed on a turn (after saying ``said``, kept): the holding line and one
    more try, or, failing again, the polite close."""
    if said:
        with transaction.atomic():
            lock_call(call, "dialogue")
            add_turn(call, role=Turn.Role.AGENT, text=said, interrupted=True)
    return model_turns.model_failed(call, retrying=retrying)


def retry(call_id: int, call_sid: str) -> PendingReply | None:
    """The model's second try at the turn (None: the call is gone)."""
    call = load_call(call_id, {"CallSid": call_sid})
    if call is None or not call.is_live:
        return None
    return pending_reply(call, retrying=True)


def socket_dropped(call_id: int) -> None:
    """The socket closed abnormally on a call we had not ended: kept in its flags and
    dialogue. The call ends by Twilio's <Connect> action (an apology, then a hang-up:
    ``calls.flow.relay_ended``) or by the callee; its transcript stays as it was."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return
        dialogue = Dialogue.from_json(call.dialogue)
        if dialogue.ended:
            return
        logger.warning("Call %s: the relay socket dropped during the call.", call_id)
        save_dialogue(call, dialogue.but(closed="relay socket dropped"))
        Call.objects.filter(pk=call_id).update(flags={**call.flags, "relay_dropped": True})


def _moment(value: object) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
