"""The model's turns on a call: what the model is asked (``pending_reply``), and what its
reply does to the call once streamed (``record_reply``): the line recorded with what it
cost, its tools applied (an answer, a callback, a transfer, the end of the call).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from calls import agent, conversation, deadlines, transports
from calls.dialogue import (
    Dialogue,
    add_turn,
    aware_moment,
    clip_ids,
    close,
    goodbye,
    hold,
    listen,
    lock_call,
    opted_out,
    save_dialogue,
    template_of,
    transfer,
)
from calls.models import Call, Turn, split_outcome
from calls.services import record_speech_fallback
from campaigns.phones import time_zones_for
from templates.rendering import (
    Instructions,
    TemplateRenderError,
    contact_context,
    render_instructions,
)
from voices.clips import Speech

logger = logging.getLogger(__name__)


@dataclass
class PendingReply:
    """An AI turn ready to ask the model: what it needs, read from the database.
    ``deadline`` (a ``time.monotonic()`` instant) is when the webhook must answer."""

    call: Call
    retrying: bool
    system: str
    history: list[dict[str, str]]
    # The contact values the instructions refer to, given to the model as data apart.
    contact: dict[str, str] = field(default_factory=dict)
    # The outcome fields the model may record (calls.outcomes.answer_schema).
    answer_schema: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    deadline: float = field(
        default_factory=lambda: (
            deadlines.current() or time.monotonic() + settings.WEBHOOK_DEADLINE_SECONDS
        )
    )


@dataclass(frozen=True)
class Acted:
    """What recording a model's reply did: its TwiML, the turn it was recorded as (None:
    none), the tool that ended the dialogue (end_call, transfer_to_human, opt_out), and
    whether it was recorded as interrupted (only its first line, heard)."""

    twiml: str
    sequence: int | None = None
    terminal: str | None = None
    interrupted: bool = False


def interrupted_key(call_id: int, token: str) -> str:
    """The cache key marking a streamed reply as interrupted (calls.streaming sets it)."""
    return f"calls:reply:{call_id}:{token}:interrupted"


def pending_reply(
    call: Call, *, retrying: bool, transcript: list[tuple[int, str, str, str]] | None = None
) -> PendingReply:
    """What the model needs to answer on ``call``; ``transcript`` is its turns as
    (sequence, role, text, digits) when the caller has just read them."""
    from calls.outcomes import answer_schema

    template = template_of(call)
    zone = _contact_zone(call)
    dialogue = Dialogue.from_json(call.dialogue)
    missed = aware_moment(dialogue.missed_call_at) if call.is_inbound else None
    instructions = _instructions(call)
    answers = answer_schema(schema=template.outcome_schema)
    system = agent.system_prompt(
        instructions=instructions.text,
        now_local=timezone.now().astimezone(zone),
        language=template.language,
        inbound=call.is_inbound,
        missed_call_local=missed.astimezone(zone) if missed is not None else None,
        answer_fields=agent.answer_fields(answers),
        streamed=transports.transport_for(call).speaks_text,
    )
    if transcript is None:
        transcript = list(call.turns.values_list("sequence", "role", "text", "digits"))
    history = [
        {"role": "assistant" if role == Turn.Role.AGENT else "user", "content": text}
        for _sequence, role, words, digits in transcript
        if role in (Turn.Role.AGENT, Turn.Role.CALLER)
        for text in [words or digits]
        if text
    ]
    return PendingReply(
        call=call,
        retrying=retrying,
        system=system,
        history=history,
        contact=instructions.data,
        answer_schema=answers,
    )


def _instructions(call: Call) -> Instructions:
    """The template's AI instructions for the call, its contact's values apart (as
    ``render_instructions`` does); empty when they cannot be rendered (a variable went
    missing since the dial), as ``line`` does."""
    text = template_of(call).instructions
    try:
        return render_instructions(text=text, context=contact_context(contact=call.contact))
    except TemplateRenderError as error:
        logger.warning("Call %s: instructions not rendered: %s", call.pk, error)
        return Instructions(text="", data={})


def model_failed(call: Call, *, retrying: bool) -> str:
    with transaction.atomic():
        lock_call(call, "dialogue", "answers", "flags")
        if retrying:
            return close(call, Dialogue.from_json(call.dialogue), why="model failed twice")
        return hold(call)


def record_reply(
    call: Call,
    answer: conversation.Reply,
    lines: Sequence[Speech],
    *,
    timings: tuple[int, int, int],
    early: tuple[str, int] | None,
) -> Acted:
    """Record the reply and act on it, the call locked. ``early`` is (token, fallbacks)
    when its first line left before: that line is not said again (``fallbacks``: it was
    said with <Say>), and the caller may have spoken over it (``interrupted``)."""
    heard = None
    played = lines
    if early is not None:
        token, first_said = early
        if cache.get(interrupted_key(call.pk, token)):
            heard = lines[0].text if lines else None
            played = lines[:1]
        if first_said:  # its clip came too late to be played
            record_speech_fallback(call=call)
            played = played[1:]
    with transaction.atomic():
        lock_call(call, "dialogue", "answers", "flags")
        # The last sequence read once the lock is held (see record_streamed_reply): the
        # caller's turn may have been committed while the lock was waited for.
        last_sequence = call.turns.order_by("-sequence").values_list("sequence", flat=True).first()
        return _act(
            call,
            answer,
            lines[1:] if early is not None else lines,
            timings=timings,
            sequence=0 if last_sequence is None else last_sequence + 1,
            heard=heard,
            clips=clip_ids(played),
        )


@dataclass(frozen=True)
class CallerWords:
    """The caller's words a streamed reply answers, not written yet: written with the
    reply as turn ``sequence`` (ConversationRelay asks the model first, and writes the
    whole exchange once, ``calls.relay.session``)."""

    words: str
    sequence: int


def record_streamed_reply(
    call: Call,
    answer: conversation.Reply,
    *,
    model_ms: int,
    response_ms: int | None,
    caller: CallerWords | None = None,
) -> Acted:
    """Record a reply that was streamed as it was written (ConversationRelay: its words
    were said already) and act on it, the call locked; ``response_ms``: from the caller's
    final words to its first word sent. ``caller``: their words, written first, in the same
    transaction (an ended call gets neither: its plan is a hang-up)."""
    with transaction.atomic():
        if caller is not None:
            lock_call(call, "dialogue", "answers", "flags")
            dialogue = Dialogue.from_json(call.dialogue)
            if dialogue.ended:
                return Acted(twiml=goodbye(call))
            if dialogue.silences:  # the silences in a row end with their words
                save_dialogue(call, dialogue.but(silences=0))
            add_turn(call, role=Turn.Role.CALLER, text=caller.words, sequence=caller.sequence)
            sequence = caller.sequence + 1
        else:
            lock_call(call, "dialogue", "answers", "flags")
            # Read once the lock is held, not in the locking query: the reply often ends
            # before the caller's turn (written while the model was asked) is committed,
            # and a query that waited for the lock reads the other tables as they were
            # when it began (PostgreSQL's read committed), without that turn.
            last = call.turns.order_by("-sequence").values_list("sequence", flat=True)
            last_sequence = last.first()
            sequence = 0 if last_sequence is None else last_sequence + 1
        return _act(
            call,
            answer,
            [],
            timings=(model_ms, 0, model_ms),
            sequence=sequence,
            response_ms=response_ms,
            streamed=True,
        )


def _contact_zone(call: Call) -> ZoneInfo:
    contact = call.contact
    zones = [contact.time_zone] if contact.time_zone else list(time_zones_for(contact.phone))
    try:
        return ZoneInfo(zones[0]) if zones else ZoneInfo(settings.TIME_ZONE)
    except (KeyError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def _act(
    call: Call,
    reply: conversation.Reply,
    lines: Sequence[Speech],
    *,
    timings: tuple[int, int, int],
    sequence: int,
    heard: str | None = None,
    clips: Sequence[int] = (),
    response_ms: int | None = None,
    streamed: bool = False,
) -> Acted:
    """Record the model's line (as turn ``sequence``) with its timings and tokens, apply
    its tools, and answer what the transport says next.

    ``heard`` (the caller spoke over the reply, having heard that much) records only
    that, and leaves out the call's end or transfer: the caller's words come next. An
    opt-out is applied whatever was heard. ``streamed``: the reply's words were said as
    they were written (ConversationRelay), so they are kept even beside an opt-out's
    confirmation."""
    model_ms, speech_ms, total_ms = timings
    dialogue = Dialogue.from_json(call.dialogue)
    names = {action.name for action in reply.actions}
    terminal = next((name for name in agent.TERMINAL_TOOLS if name in names), None)
    outcome = call.outcome
    for action in reply.actions:
        if action.name == "record_answer":
            outcome[action.arguments["field"]] = action.arguments.get("value")
        elif action.name == "schedule_callback":
            # A wall-clock time where the callee lives ("mañana a las diez").
            at = datetime.datetime.fromisoformat(str(action.arguments["at"]))
            local = at.replace(tzinfo=_contact_zone(call))
            outcome["callback_at"] = local.isoformat()
            if action.arguments.get("note"):
                outcome["callback_note"] = action.arguments["note"]
    if outcome != call.outcome:
        Call.objects.filter(pk=call.pk).update(**split_outcome(outcome))
        call.outcome = outcome
    # The turn that records the reply carries what the model billed for it, and the
    # clips played for it (``clips``).
    usage: dict[str, Any] = {
        "clips": list(clips),
        "model": reply.model,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "latency_ms": total_ms,
        "model_ms": model_ms,
        "speech_ms": speech_ms,
        **({"response_ms": response_ms} if response_ms is not None else {}),
    }
    if terminal == "opt_out":
        if streamed and reply.text:
            # The caller heard them before the confirmation, which follows as its own line.
            add_turn(call, role=Turn.Role.AGENT, text=reply.text, sequence=sequence, **usage)
            usage = {}
        return Acted(
            twiml=opted_out(call, how=_("the AI model's opt_out tool"), **usage),
            terminal=terminal,
        )
    text = reply.text if heard is None else heard
    recorded = None
    if text:
        add_turn(call, role=Turn.Role.AGENT, text=text, sequence=sequence, **usage)
        recorded, usage = sequence, {}
    elif terminal is None or heard is not None:
        # The model only acted, with nothing to say: a note of what it did keeps what it
        # billed (a line said for it, below, would otherwise carry it).
        note = ", ".join(sorted(names))
        add_turn(call, role=Turn.Role.SYSTEM, text=note, sequence=sequence, **usage)
        usage = {}
    if heard is not None:
        if dialogue.to_json() != call.dialogue:
            save_dialogue(call, dialogue)
        return Acted(twiml=listen(call, []), sequence=recorded, interrupted=True)
    if terminal == "transfer_to_human":
        twiml = transfer(call, dialogue, [], voiced=lines, **usage)
    elif terminal == "end_call":
        if reply.text:
            save_dialogue(call, dialogue.but(ended=True, closed="model"))
            twiml = goodbye(call, lines=lines)
        else:
            twiml = close(call, dialogue, why="model", voiced=lines, **usage)
    else:
        # Else the caller's turn, just written, touched the call.
        if dialogue.to_json() != call.dialogue:
            save_dialogue(call, dialogue)
        twiml = listen(call, lines)
    return Acted(twiml=twiml, sequence=recorded, terminal=terminal)
