"""A call's decisions, webhook by webhook: the answer, each turn (the script's step or
the model's reply), a machine's voicemail, a transfer's end, the fallback. Each function
takes the call's id and Twilio's parameters and returns what the call's transport answers
(``calls.transports``: TwiML today).

Webhooks arrive late, twice and for calls that are over; every function here answers each
of them with something that makes sense (at worst a polite hang-up), never an error, so
the caller never hears Twilio's "an application error has occurred".

What the model's reply does is ``calls.model_turns``'s, how it is streamed
``calls.streaming``'s; the dialogue's state and the ways a turn ends are
``calls.dialogue``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
from collections.abc import Callable, Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from callcenter.queries import one_or_none
from calls import recordings, streaming, telephony, transports
from calls.dialogue import (
    Dialogue,
    add_turn,
    clip_ids,
    close,
    line,
    lock_call,
    opted_out,
    save_dialogue,
    say_and_hang_up,
    say_and_listen,
    speak,
    still_there,
    template_of,
    transfer,
)
from calls.dialogue import goodbye as goodbye
from calls.dialogue import listen as listen
from calls.dialogue import load_call as load_call
from calls.links import webhook_url
from calls.model_turns import PendingReply, pending_reply
from calls.models import AnsweredBy, Call, Turn, split_outcome
from calls.optout import is_opt_out
from calls.relay import answers as relay
from calls.relay.answers import relay_ended as relay_ended
from calls.scripted import first_turn, next_turn
from calls.streaming import continue_reply as continue_reply
from calls.streaming import in_thread as in_thread
from campaigns.models import MachineAction
from templates.models import CallTemplate
from voices.clips import Speech

logger = logging.getLogger(__name__)


# --- Answer ---------------------------------------------------------------------------------


def answer(*, call_id: int, params: Mapping[str, str]) -> str:
    """The callee picked up: the greeting (and a scripted call's first question), then
    listen. Twilio repeating the request never plays the greeting twice: the repeat
    only listens."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    template = template_of(call)
    texts = [
        inbound_greeting(call) if call.is_inbound else line(call, "greeting", template.greeting)
    ]
    # What calls.inbound put in the dialogue of an inbound call is kept.
    dialogue = Dialogue.from_json(call.dialogue).but(silences=0, retries=0)
    if relay.streams(call):
        return relay.answer(call, dialogue, greeting=" ".join(text for text in texts if text))
    received = timezone.now()
    if template.mode == CallTemplate.Mode.SCRIPTED:
        first = first_turn(template.steps)
        texts.append(line(call, "steps.0.prompt", first.say))
        dialogue = dialogue.but(scripted=True, step=first.step_id)
    # Voiced before the call is locked: the lines were voiced ahead, and a slow one must
    # not hold the lock (a repeated request voices them again, from their clips).
    lines = speak(call, texts)
    with transaction.atomic():
        one_or_none(Call.objects.select_for_update().filter(pk=call.pk))
        if call.turns.exists():
            logger.info("Call %s: answer requested again; listening, no second greeting.", call.pk)
            return listen(call, [])
        spoken = " ".join(text for text in texts if text)
        add_turn(call, role=Turn.Role.AGENT, text=spoken, clips=clip_ids(lines))
        save_dialogue(call, dialogue)
        # Our part of the callee's wait for the greeting: the answer's own time.
        relay.keep_first_audio(call, since=received)
    return listen(call, lines)


def inbound_greeting(call: Call) -> str:
    """What a contact ringing us back hears first: the template's greeting for them, or a
    standard one that names the company and says an automated assistant speaks."""
    template = template_of(call)
    if template.inbound_greeting:
        text = line(call, "inbound_greeting", template.inbound_greeting)
        if text:
            return text
    with translation.override(template.language.split("-")[0]):
        return _(
            "Thank you for calling us back. This is the automated assistant of %(company)s."
        ) % {"company": call.campaign.partner.name}


# --- Answering machines -------------------------------------------------------------------


# A message is left only once the machine's greeting has ended (Twilio's AMD with
# DetectMessageEnd): said over the greeting it would be lost, and a fax hears nothing.
VOICEMAIL_ANSWERS = frozenset(
    {AnsweredBy.MACHINE_END_BEEP, AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER}
)


class MachineHandled(enum.StrEnum):
    """What ``handle_machine`` did with a call a machine answered."""

    OVER = "over"  # the call had ended already
    VOICEMAIL = "voicemail"  # pointed at the voicemail message
    HUNG_UP = "hung_up"


def handle_machine(*, call_id: int) -> MachineHandled:
    """A machine answered ``call_id``: point the live call at the voicemail message when
    its greeting has ended and its campaign leaves one, else (a fax, a machine still
    greeting) hang up. Returns what was done."""
    call = Call.objects.select_related("campaign__template").get(pk=call_id)
    if not call.is_live or not call.provider_sid:
        return MachineHandled.OVER
    campaign = call.campaign
    if (
        call.answered_by in VOICEMAIL_ANSWERS
        and campaign.machine_action == MachineAction.VOICEMAIL
        and template_of(call).voicemail_message
    ):
        telephony.redirect_call(sid=call.provider_sid, url=webhook_url("voicemail", call.pk))
        return MachineHandled.VOICEMAIL
    telephony.hang_up(sid=call.provider_sid)
    return MachineHandled.HUNG_UP


def voicemail(*, call_id: int, params: Mapping[str, str]) -> str:
    """TwiML of the message left after the beep, then hang up."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    text = line(call, "voicemail_message", template_of(call).voicemail_message)
    lines = speak(call, [text])
    with transaction.atomic():
        one_or_none(Call.objects.select_for_update().filter(pk=call.pk))
        if not call.turns.filter(role=Turn.Role.AGENT, text=text, sequence__gt=0).exists():
            add_turn(call, role=Turn.Role.AGENT, text=text, clips=clip_ids(lines))
    return goodbye(call, lines=lines)


# --- Fallback -------------------------------------------------------------------------------


def fallback(*, call_id: int, params: Mapping[str, str]) -> str:
    """Twilio could not get or run our TwiML: apologise, say who called, offer the
    opt-out (a key), and hang up. Works without the database when it is the cause."""
    logger.error(
        "Fallback for call %s: Twilio error %s on %s.",
        call_id,
        params.get("ErrorCode", "?"),
        params.get("ErrorUrl", "?"),
    )
    language, company, inbound = "es-ES", "", False
    try:
        call = load_call(call_id, params)
    except Exception:  # the database may be what failed: speak anyway
        logger.exception("Fallback for call %s without the call's details.", call_id)
        call = None
    if call is not None:
        language = template_of(call).language
        company = call.campaign.partner.name
        inbound = call.is_inbound
    with translation.override(language.split("-")[0]):
        if company and inbound:  # they rang us
            apology = _(
                "Sorry, %(company)s cannot take your call now because of a technical problem."
            ) % {"company": company}
        elif company:
            apology = _(
                "Sorry, we are having a technical problem. This call was from %(company)s; "
                "we will call you another time."
            ) % {"company": company}
        else:
            apology = _("Sorry, we are having a technical problem; we will call you another time.")
        offer = _("If you do not want us to call you again, press %(digit)s now.") % {
            "digit": settings.OPT_OUT_DIGIT
        }
        bye = _("Goodbye.")
    lines = [Speech(text=apology, language=language), Speech(text=offer, language=language)]
    return transports.transport_for(call).apologise(
        call_id, lines, goodbye=Speech(text=bye, language=language)
    )


def fallback_opt_out(*, call_id: int, params: Mapping[str, str]) -> str:
    """The key pressed after the fallback's offer: OPT_OUT_DIGIT puts the number on the
    partner's do-not-call list before the confirmation is spoken."""
    from calls.outcomes import opt_out

    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    language = template_of(call).language
    if params.get("Digits") != settings.OPT_OUT_DIGIT:
        with translation.override(language.split("-")[0]):
            return goodbye(lines=[Speech(text=_("Goodbye."), language=language)])
    confirmation = opt_out(call=call, how=f"key {settings.OPT_OUT_DIGIT} after the fallback")
    return goodbye(call, lines=speak(call, [confirmation]))


# --- Turns --------------------------------------------------------------------------------

# Silences in a row after which the call ends politely.
MAX_SILENCES = 2


class NextStep(enum.StrEnum):
    """What a caller's turn leads to, decided before anything is written (``prepare_turn``)."""

    OPT_OUT = "opt-out"  # words or the key: the call ends at once
    SILENCE = "silence"  # silent too many times in a row: closed politely
    TURN_LIMIT = "turn limit"  # CALL_MAX_TURNS reached: closed politely
    STILL_THERE = "still there"  # one silence: asked whether they are still there
    SCRIPT = "script"  # the script's next step
    MODEL = "model"  # the model answers (``streaming.reply``)


async def turn(
    *,
    call_id: int,
    params: Mapping[str, str],
    silence: bool = False,
    retry: bool = False,
    reply_token: str = "",
) -> str:
    """The callee answered (or stayed silent, ``silence``; ``retry``: the model's second
    try): the next line. An AI reply starts playing as soon as its first sentence is
    voiced (see ``streaming.reply``); the callee speaking over it arrives here with that
    reply's ``reply_token`` (``streaming.interrupted``)."""
    # The answer's lines (with the recording's announcement) have been played: a
    # recording campaign starts recording now, while the turn is decided.
    recording = None if retry else asyncio.ensure_future(_start_recording(call_id))
    try:
        return await _turn(
            call_id=call_id, params=params, silence=silence, retry=retry, reply_token=reply_token
        )
    finally:
        if recording is not None:
            await recording


async def _start_recording(call_id: int) -> None:
    try:
        await in_thread(recordings.start_after_announcement)(call_id=call_id)
    except Exception:  # a recording must never cost the caller their turn
        logger.exception("Call %s: starting the recording failed.", call_id)


async def _turn(
    *,
    call_id: int,
    params: Mapping[str, str],
    silence: bool,
    retry: bool,
    reply_token: str,
) -> str:
    if reply_token:
        said = await streaming.interrupted(call_id=call_id, token=reply_token)
        if said is not None:
            return said
    loop = asyncio.get_running_loop()
    started: list[concurrent.futures.Future[str]] = []

    def start(pending: PendingReply) -> None:
        # Called in prepare_turn's thread: the model is asked while the turn is written.
        started.append(asyncio.run_coroutine_threadsafe(streaming.reply(pending), loop))

    try:
        step = await in_thread(prepare_turn)(
            call_id=call_id, params=params, silence=silence, retry=retry, on_model_turn=start
        )
    except BaseException:
        for reply in started:  # the turn was not recorded: its reply must not be said
            reply.cancel()
        raise
    if isinstance(step, str):
        return step
    [reply] = started  # the model's reply, asked for by prepare_turn
    return await asyncio.wrap_future(reply)


def prepare_turn(
    *,
    call_id: int,
    params: Mapping[str, str],
    silence: bool = False,
    retry: bool = False,
    on_model_turn: Callable[[PendingReply], object] | None = None,
) -> str | PendingReply:
    """The callee answered (or stayed silent): record it, then the next line, or, for
    the model to answer, what it needs (a PendingReply).

    In order: an opt-out (words or the key) ends the call at once, the do-not-call entry
    committed first; silence twice in a row, the turn limit or the time limit close the
    call politely; otherwise the script or the model decides what comes next.

    ``on_model_turn`` is given the PendingReply it returns as soon as it is known, before
    the turn is written: the model can start while the caller's words are recorded (the
    transaction still holds the call's row, so the reply's own writes wait for them).
    """
    speech_text = " ".join(params.get("SpeechResult", "").split())
    digits = params.get("Digits", "").strip()
    silence = silence or not (speech_text or digits)
    if retry:
        call = load_call(call_id, params)
        if call is None:
            return goodbye()
        # The model's second try: nothing new was said, nothing is written.
        pending = pending_reply(call, retrying=True)
        if on_model_turn is not None:
            on_model_turn(pending)
        return pending
    # A turn is the hot path: the call is read and locked in one query, its transcript
    # in one more; what comes next is decided before anything is written.
    with transaction.atomic():
        call = load_call(call_id, params, lock=True)
        if call is None:
            return goodbye()
        template = template_of(call)
        dialogue = Dialogue.from_json(call.dialogue)
        transcript = list(call.turns.values_list("sequence", "role", "text", "digits"))
        if not transcript:
            return listen(call, [])  # a turn before any greeting: a stray request
        sequence = transcript[-1][0] + 1
        if not silence:
            transcript.append((sequence, Turn.Role.CALLER, speech_text, digits))
        dialogue.silences = dialogue.silences + 1 if silence else 0
        agent_turns = sum(role == Turn.Role.AGENT for _sequence, role, *_words in transcript)
        if is_opt_out(
            speech=speech_text,
            digits=digits,
            opt_out_digit=settings.OPT_OUT_DIGIT,
            language=template.language,
        ):
            next_step = NextStep.OPT_OUT
        elif dialogue.silences >= MAX_SILENCES:
            next_step = NextStep.SILENCE
        elif agent_turns >= settings.CALL_MAX_TURNS:  # the caller's line is not one
            next_step = NextStep.TURN_LIMIT
        elif silence:
            next_step = NextStep.STILL_THERE
        elif template.mode == CallTemplate.Mode.SCRIPTED:
            next_step = NextStep.SCRIPT
        else:
            next_step = NextStep.MODEL
        asked: PendingReply | None = None
        if next_step == NextStep.MODEL:
            asked = pending_reply(call, retrying=False, transcript=transcript)
            if on_model_turn is not None:
                on_model_turn(asked)
        if not silence:
            add_turn(
                call,
                role=Turn.Role.CALLER,
                text=speech_text,
                digits=digits,
                sequence=sequence,
                confidence=_confidence(params.get("Confidence")),
            )
        if next_step == NextStep.OPT_OUT:
            return opted_out(call, how=speech_text or f"key {digits}")
        if next_step in (NextStep.SILENCE, NextStep.TURN_LIMIT):
            return close(call, dialogue, why=next_step.value)
        if next_step == NextStep.STILL_THERE:
            return still_there(call, dialogue)
        if next_step == NextStep.SCRIPT:
            return _scripted_turn(call, dialogue, speech=speech_text, digits=digits)
        save_dialogue(call, dialogue)  # the silences in a row end here
        assert asked is not None  # the model's turn, built above
        return asked


def _confidence(value: str | None) -> float | None:
    try:
        confidence = float(value) if value else None
    except ValueError:
        return None
    return confidence if confidence is not None and 0 <= confidence <= 1 else None


def _scripted_turn(call: Call, dialogue: Dialogue, *, speech: str, digits: str) -> str:
    steps = template_of(call).steps
    step_id = dialogue.step
    if step_id is None:
        return close(call, dialogue, why="script finished")
    step = next_turn(steps, step_id=step_id, speech=speech, digits=digits, retries=dialogue.retries)
    if step.outcome:
        outcome = {**call.outcome, **step.outcome}
        Call.objects.filter(pk=call.pk).update(**split_outcome(outcome))
        call.outcome = outcome
    dialogue = dialogue.but(scripted=True, step=step.step_id, retries=step.retries)
    if step.exit == "opt_out":
        return opted_out(call, how=speech or f"key {digits}")
    if step.exit == "transfer":
        return transfer(call, dialogue, [])
    if step.exit == "end":
        return close(call, dialogue, why="script end" if step.understood else "not understood")
    field = _step_field(steps, step.step_id, retry=not step.understood)
    return say_and_listen(call, dialogue, [line(call, field, step.say)])


def _step_field(steps: list[dict], step_id: str | None, *, retry: bool) -> str:
    index = next((i for i, step in enumerate(steps) if step.get("id") == step_id), 0)
    return f"steps.{index}.{'retry_prompt' if retry else 'prompt'}"


# How a <Dial> ended (DialCallStatus) when someone took the transfer; anything else
# (busy, no-answer, failed, canceled) means nobody did.
TRANSFER_TAKEN = frozenset({"completed", "answered"})


def transfer_ended(*, call_id: int, params: Mapping[str, str]) -> str:
    """The transferred leg is over (``DialCallStatus``), kept in the outcome. Taken, the
    call ends. Not taken (busy, no answer, failed), the callee is still on the line: they
    hear the template's apology with an offer to call back, and the call goes on (an AI
    call listens for when; a scripted one promises the callback and ends)."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    status = params.get("DialCallStatus", "")[:32]
    with transaction.atomic():
        lock_call(call, "dialogue", "flags")
        dialogue = Dialogue.from_json(call.dialogue)
        flags = {**call.flags, "transfer_status": status}
        if status in TRANSFER_TAKEN or not dialogue.transferred:
            # A repeat of a failed transfer's callback finds the transfer already undone.
            Call.objects.filter(pk=call.pk).update(flags=flags, updated_at=timezone.now())
            return goodbye(call)
        logger.info("Call %s: nobody took the transfer (%s).", call.pk, status)
        flags.update(transferred=False, transfer_failed=True)
        template = template_of(call)
        dialogue = dialogue.but(transferred=False)
        text = line(call, "transfer_failed_line", template.transfer_failed_line)
        if template.mode == CallTemplate.Mode.SCRIPTED:
            flags["callback"] = True  # the script cannot ask when: the retry delay says
            Call.objects.filter(pk=call.pk).update(flags=flags)
            call.flags = flags
            return say_and_hang_up(call, dialogue, [text or _transfer_failed_line(call)])
        Call.objects.filter(pk=call.pk).update(flags=flags)
        call.flags = flags
        return say_and_listen(call, dialogue, [text or _transfer_failed_line(call)])


def _transfer_failed_line(call: Call) -> str:
    """The standard apology when nobody takes a transfer, in the call's language."""
    template = template_of(call)
    with translation.override(template.language.split("-")[0]):
        if template.mode == CallTemplate.Mode.SCRIPTED:
            return _(
                "I'm sorry, nobody can take your call right now. We will call you back "
                "later. Goodbye."
            )
        return _(
            "I'm sorry, nobody can take your call right now. We can call you back later: "
            "when would suit you?"
        )
