"""What a relay call's socket writes: the session opened (its time to first audio), the
replies streamed and what they did, the lines the caller cut short, the socket dropped.

Plain blocking functions: the session runs them in the webhooks' threads, as on the
relay socket (``calls.relay.session.on_socket``), so that what the flow answers is a plan
for the socket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls import conversation, model_turns, transports
from calls.dialogue import Dialogue, add_turn, aware_moment, load_call, lock_call
from calls.model_turns import CallerWords, PendingReply, pending_reply
from calls.models import Call, Turn
from campaigns.models import ConversationTransport

logger = logging.getLogger(__name__)


@dataclass
class Memory:
    """What a relay session keeps of its call between turns, so that the caller's words
    reach the model at once (``calls.relay.session``): the call as loaded when the socket
    opened, what the model is told of it, the conversation so far, and the next turn's
    sequence (None: unknown, read again before the next turn)."""

    call: Call
    greeting: str
    system: str
    contact: dict[str, str]
    answer_schema: dict[str, Any]
    history: list[dict[str, str]] = field(default_factory=list)
    agent_turns: int = 0
    next_sequence: int | None = None

    def pending(self, words: str) -> PendingReply:
        """What the model needs to answer ``words`` (said after the history)."""
        return PendingReply(
            call=self.call,
            retrying=False,
            system=self.system,
            history=[*self.history, {"role": "user", "content": words}],
            contact=self.contact,
            answer_schema=self.answer_schema,
        )

    def said(self, words: str, reply: str, *, next_sequence: int | None) -> None:
        """The caller said ``words``, we answered ``reply`` (what was heard of it)."""
        self.history.append({"role": "user", "content": words})
        if reply:
            self.history.append({"role": "assistant", "content": reply})
        self.agent_turns += 1
        self.next_sequence = next_sequence

    def cut(self, heard: str) -> None:
        """Our last line was heard only up to ``heard``."""
        if self.history and self.history[-1]["role"] == "assistant":
            self.history[-1] = {"role": "assistant", "content": heard.strip()}


def opened(call_id: int, *, call_sid: str, contact: str) -> Memory | None:
    """The call's memory for its session (with the greeting Twilio says as the session
    opens, ``welcomeGreeting``), when the socket belongs to live relay call ``call_id``
    (its SID and the contact of its ``<Parameter>`` agree); None otherwise. The call's
    time to first audio is kept: Twilio starts the greeting as the session opens."""
    call = load_call(call_id, {"CallSid": call_sid})
    if call is None or not call.is_live or call.transport != ConversationTransport.RELAY:
        return None
    if contact and contact != str(call.contact_id):
        logger.warning("Relay socket for call %s names contact %s.", call_id, contact)
        return None
    dialogue = Dialogue.from_json(call.dialogue)
    if dialogue.ended:
        return None
    if not dialogue.other.get("relay_opened"):
        # Its first session: the greeting starts now, and a socket opened again later
        # (Twilio's Application Reconnect) finds the call had one.
        answered = aware_moment(dialogue.other.get("answer_received_at"))
        first_audio = {}
        if answered is not None and call.first_audio_ms is None:
            waited = (timezone.now() - answered).total_seconds()
            first_audio = {"first_audio_ms": max(round(waited * 1000), 0)}
        with transaction.atomic():
            lock_call(call, "dialogue")
            opened = Dialogue.from_json(call.dialogue)
            marked = opened.but(other={**opened.other, "relay_opened": True})
            Call.objects.filter(pk=call.pk).update(dialogue=marked.to_json(), **first_audio)
    first = call.turns.filter(role=Turn.Role.AGENT).order_by("sequence").first()
    memory = recall(call)
    memory.greeting = first.text if first is not None else ""
    return memory


def reopened(call_id: int) -> Memory | None:
    """The call's memory for a socket Twilio opened again (Application Reconnect), when
    ``call_id`` is a live relay call whose session had opened and not ended; None
    otherwise."""
    call = load_call(call_id, {})
    if call is None or not call.is_live or call.transport != ConversationTransport.RELAY:
        return None
    dialogue = Dialogue.from_json(call.dialogue)
    if dialogue.ended or not dialogue.other.get("relay_opened"):
        return None
    return recall(call)


def recall(call: Call) -> Memory:
    """What a session keeps of ``call``, read from its transcript now."""
    with transports.on_relay_socket():
        pending = pending_reply(call, retrying=False)
    transcript = list(call.turns.values_list("sequence", "role"))
    return Memory(
        call=call,
        greeting="",
        system=pending.system,
        contact=pending.contact,
        answer_schema=pending.answer_schema,
        history=pending.history,
        agent_turns=sum(role == Turn.Role.AGENT for _sequence, role in transcript),
        next_sequence=transcript[-1][0] + 1 if transcript else 0,
    )


def recall_again(memory: Memory) -> Memory:
    """``memory`` read again from the transcript (after a turn the flow decided)."""
    fresh = recall(memory.call)
    fresh.greeting = memory.greeting
    return fresh


def answered_in(call_id: int, response_ms: int) -> None:
    """The flow's own line (not the model's) answered the caller's words: its response
    time goes on the last line we said."""
    last = Turn.objects.filter(call_id=call_id, role=Turn.Role.AGENT).order_by("-sequence")
    turn = last.values_list("pk", flat=True).first()
    if turn is not None:
        Turn.objects.filter(pk=turn, response_ms__isnull=True).update(response_ms=response_ms)


def record_streamed(
    call: Call,
    answer: conversation.Reply,
    *,
    model_ms: int,
    response_ms: int | None,
    caller: CallerWords | None = None,
) -> tuple[str, int | None]:
    """Record a streamed reply (after ``caller``'s words, when given) and act on it; the
    plan of what follows, and the next turn's sequence when the reply wrote one line and
    the conversation goes on (else None: read it again)."""
    acted = model_turns.record_streamed_reply(
        call, answer, model_ms=model_ms, response_ms=response_ms, caller=caller
    )
    going_on = acted.sequence is not None and acted.terminal is None
    return acted.twiml, (acted.sequence + 1 if going_on and acted.sequence is not None else None)


def heard_only(
    call: Call,
    heard: str,
    *,
    response_ms: int | None,
    caller: CallerWords | None = None,
    spoken_over: bool = True,
) -> None:
    """A reply stopped while it was written (the caller spoke over it, or the socket
    closed): the transcript keeps what was heard of it, marked as interrupted; its tools
    were never given, so nothing else changes. ``caller``: the words it answered, written
    first; ``spoken_over``: the caller spoke over it (a line is kept even when they heard
    nothing of it)."""
    with transaction.atomic():
        lock_call(call, "dialogue")
        sequence = None
        if caller is not None:
            add_turn(call, role=Turn.Role.CALLER, text=caller.words, sequence=caller.sequence)
            sequence = caller.sequence + 1
        if heard.strip() or spoken_over:
            add_turn(
                call,
                role=Turn.Role.AGENT,
                text=heard.strip(),  # as cut_last_line keeps it: the model reads it next
                interrupted=True,
                response_ms=response_ms,
                sequence=sequence,
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


def model_failed(
    call: Call, *, retrying: bool, said: str, caller: CallerWords | None = None
) -> str:
    """The model failed on a turn (after saying ``said``, kept; ``caller``: the words it
    answered, written first): the holding line and one more try, or, failing again, the
    polite close."""
    if said or caller is not None:
        with transaction.atomic():
            lock_call(call, "dialogue")
            if caller is not None:
                add_turn(call, role=Turn.Role.CALLER, text=caller.words, sequence=caller.sequence)
            if said:
                add_turn(call, role=Turn.Role.AGENT, text=said, interrupted=True)
    return model_turns.model_failed(call, retrying=retrying)


def retry(call_id: int, call_sid: str) -> PendingReply | None:
    """The model's second try at the turn (None: the call is gone)."""
    call = load_call(call_id, {"CallSid": call_sid})
    if call is None or not call.is_live:
        return None
    return pending_reply(call, retrying=True)


def socket_dropped(call_id: int) -> None:
    """The socket closed abnormally on a call we had not ended: kept in its flags. Twilio
    opens it again (Application Reconnect, RELAY_APPLICATION_RECONNECT) and the
    conversation goes on; else the call ends by Twilio's <Connect> action (an apology,
    then a hang-up: ``calls.flow.relay_ended``) or by the callee. Its transcript stays as
    it was."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return
        dialogue = Dialogue.from_json(call.dialogue)
        if dialogue.ended:
            return
        logger.warning("Call %s: the relay socket dropped during the call.", call_id)
        drops = call.flags.get("relay_drops", 0)
        flags = {
            **call.flags,
            "relay_dropped": True,
            "relay_drops": (drops if isinstance(drops, int) else 0) + 1,
        }
        Call.objects.filter(pk=call_id).update(flags=flags)
