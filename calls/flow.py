"""What is said on a call, webhook by webhook: the answer, a machine's voicemail, the
fallback. Each function takes the call's id and Twilio's parameters and returns TwiML.

Webhooks arrive late, twice and for calls that are over; every function here answers each
of them with TwiML that makes sense (at worst a polite hang-up), never an error, so the
caller never hears Twilio's "an application error has occurred".
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from callcenter.queries import one_or_none
from calls import conversation, deadlines, telephony
from calls.links import webhook_url
from calls.models import AnsweredBy, Call, CallEvent, Turn, split_outcome
from calls.optout import is_opt_out
from calls.scripted import first_turn, next_turn
from calls.services import (
    MACHINE_ANSWERS,
    record_speech_fallback,
    speech_for_call,
    store_event,
)
from campaigns import limits
from campaigns.models import MachineAction
from campaigns.phones import time_zones_for
from templates.models import CallTemplate
from templates.rendering import (
    Instructions,
    LineTooLong,
    TemplateRenderError,
    contact_context,
    render_instructions,
    render_line,
    sentences,
)
from voices.clips import Speech

logger = logging.getLogger(__name__)

T = TypeVar("T")


def load_call(call_id: int, params: Mapping[str, str], *, lock: bool = False) -> Call | None:
    """The call a webhook is about, with what speaking on it needs; None when there is
    no such call or the request's CallSid belongs to another call. With ``lock`` (in a
    transaction) the call's row stays locked until the transaction ends."""
    calls = Call.objects.select_related(
        "campaign__partner", "campaign__template", "contact", "voice"
    )
    if lock:
        calls = calls.select_for_update(of=("self",))
    call = one_or_none(calls.filter(pk=call_id))
    if call is None:
        logger.warning("Webhook for unknown call %s.", call_id)
        return None
    sid = params.get("CallSid", "")
    if call.provider_sid and sid and sid != call.provider_sid:
        logger.warning(
            "Webhook for call %s carries SID %s, not %s.", call_id, sid, call.provider_sid
        )
        return None
    if not call.provider_sid and sid:
        # The answer can overtake the API response that tells us the SID.
        Call.objects.filter(pk=call.pk, provider_sid__isnull=True).update(provider_sid=sid)
        call.provider_sid = sid
    call.contact.campaign = call.campaign
    return call


def line(call: Call, field: str, text: str) -> str:
    """``text`` (the template's ``field``) rendered for the call's contact, cut at a sentence
    end when the contact's data makes it longer than the field's limit; "" when it cannot
    be (a variable went missing since the dial): the caller hears the next line."""
    try:
        return render_line(text=text, context=contact_context(contact=call.contact), field=field)
    except LineTooLong as error:
        logger.warning(
            "Call %s: %s is longer than %s characters once filled in: cut to %s.",
            call.pk,
            field,
            error.limit,
            len(error.cut),
        )
        return error.cut
    except TemplateRenderError as error:
        logger.warning("Call %s: %s not spoken: %s", call.pk, field, error)
        return ""


def clip_ids(lines: list[Speech]) -> list[int]:
    """The clips ``lines`` play, in order: what a turn keeps of its audio."""
    return [speech.clip_id for speech in lines if speech.clip_id is not None]


def speak(call: Call, texts: list[str]) -> list[Speech]:
    """How to speak each non-empty text on the call, sentence by sentence (clips, else
    <Say>): a template's lines are voiced ahead a sentence at a time
    (campaigns.prerendering), so a call finds them ready."""
    return [
        speech_for_call(call=call, text=sentence)
        for text in texts
        if text
        for sentence in sentences(text)
    ]


def add_turn(
    call: Call,
    *,
    role: str,
    text: str = "",
    digits: str = "",
    sequence: int | None = None,
    **fields,
) -> Turn:
    """Append an utterance to the call's transcript (call row locked by the caller), as
    its ``sequence`` when the caller has read it under that lock, else after the last."""
    if sequence is None:
        last = call.turns.order_by("-sequence").values_list("sequence", flat=True).first()
        sequence = 0 if last is None else last + 1
    now = timezone.now()
    return Turn.objects.create(
        call=call,
        sequence=sequence,
        role=role,
        text=text,
        digits=digits,
        started_at=fields.pop("started_at", now),
        ended_at=fields.pop("ended_at", now),
        **fields,
    )


def listen(call: Call, lines: list[Speech]) -> str:
    """TwiML: speak ``lines`` and wait for the callee's answer at the turn webhook."""
    return telephony.gather_twiml(
        lines=lines,
        action=webhook_url("turn", call.pk),
        language=call.campaign.template.language,
        no_input_url=webhook_url("turn", call.pk) + "?silence=1",
    )


def goodbye(call: Call | None = None, *, lines: list[Speech] | None = None) -> str:
    """TwiML: speak ``lines`` (none by default) and hang up."""
    return telephony.hang_up_twiml(lines=lines or [])


# --- Answer ---------------------------------------------------------------------------------


def answer(*, call_id: int, params: Mapping[str, str]) -> str:
    """The callee picked up: the greeting (and a scripted call's first question), then
    listen. Twilio repeating the request never plays the greeting twice: the repeat
    only listens."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    template = call.campaign.template
    texts = [
        inbound_greeting(call) if call.is_inbound else line(call, "greeting", template.greeting)
    ]
    # What calls.inbound put in the dialogue of an inbound call is kept.
    dialogue = {**(call.dialogue or {}), "silences": 0, "retries": 0}
    if template.mode == CallTemplate.Mode.SCRIPTED:
        first = first_turn(template.steps)
        texts.append(line(call, "steps.0.prompt", first.say))
        dialogue["step"] = first.step_id
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
        Call.objects.filter(pk=call.pk).update(dialogue=dialogue, updated_at=timezone.now())
    return listen(call, lines)


def inbound_greeting(call: Call) -> str:
    """What a contact ringing us back hears first: the template's greeting for them, or a
    standard one that names the company and says an automated assistant speaks."""
    template = call.campaign.template
    if template.inbound_greeting:
        text = line(call, "inbound_greeting", template.inbound_greeting)
        if text:
            return text
    with translation.override(template.language.split("-")[0]):
        return _(
            "Thank you for calling us back. This is the automated assistant of %(company)s."
        ) % {"company": call.campaign.partner.name}


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


def forget_machine_detection(*, verdict_id: int) -> None:
    """Drop a kept AMD verdict that could not be acted on, so that its next delivery is."""
    CallEvent.objects.filter(pk=verdict_id, kind=CallEvent.Kind.MACHINE_DETECTION).delete()


# A message is left only once the machine's greeting has ended (Twilio's AMD with
# DetectMessageEnd): said over the greeting it would be lost, and a fax hears nothing.
VOICEMAIL_ANSWERS = frozenset(
    {AnsweredBy.MACHINE_END_BEEP, AnsweredBy.MACHINE_END_SILENCE, AnsweredBy.MACHINE_END_OTHER}
)


def handle_machine(*, call_id: int) -> str:
    """A machine answered ``call_id``: point the live call at the voicemail message when
    its greeting has ended and its campaign leaves one, else (a fax, a machine still
    greeting) hang up. Returns what was done."""
    call = Call.objects.select_related("campaign__template").get(pk=call_id)
    if not call.is_live or not call.provider_sid:
        return "over"
    campaign = call.campaign
    if (
        call.answered_by in VOICEMAIL_ANSWERS
        and campaign.machine_action == MachineAction.VOICEMAIL
        and campaign.template.voicemail_message
    ):
        telephony.redirect_call(sid=call.provider_sid, url=webhook_url("voicemail", call.pk))
        return "voicemail"
    telephony.hang_up(sid=call.provider_sid)
    return "hung_up"


def voicemail(*, call_id: int, params: Mapping[str, str]) -> str:
    """TwiML of the message left after the beep, then hang up."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    text = line(call, "voicemail_message", call.campaign.template.voicemail_message)
    lines = speak(call, [text])
    with transaction.atomic():
        one_or_none(Call.objects.select_for_update().filter(pk=call.pk))
        if not call.turns.filter(role=Turn.Role.AGENT, text=text, sequence__gt=0).exists():
            add_turn(call, role=Turn.Role.AGENT, text=text, clips=clip_ids(lines))
    return goodbye(call, lines=lines)


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
            recording_url=url[:500],
            recording_seconds=seconds,
            updated_at=timezone.now(),
        )


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
        language = call.campaign.template.language
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
    return telephony.fallback_twiml(
        lines=lines,
        action=webhook_url("fallback-opt-out", call_id),
        goodbye=Speech(text=bye, language=language),
    )


def fallback_opt_out(*, call_id: int, params: Mapping[str, str]) -> str:
    """The key pressed after the fallback's offer: OPT_OUT_DIGIT puts the number on the
    partner's do-not-call list before the confirmation is spoken."""
    from calls.outcomes import opt_out

    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    language = call.campaign.template.language
    if params.get("Digits") != settings.OPT_OUT_DIGIT:
        with translation.override(language.split("-")[0]):
            return goodbye(lines=[Speech(text=_("Goodbye."), language=language)])
    confirmation = opt_out(call=call, how=f"key {settings.OPT_OUT_DIGIT} after the fallback")
    return goodbye(call, lines=speak(call, [confirmation]))


# --- Turns --------------------------------------------------------------------------------

# Silences in a row after which the call ends politely.
MAX_SILENCES = 2


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
        pending = _pending_reply(call, retrying=True)
        if on_model_turn is not None:
            on_model_turn(pending)
        return pending
    # A turn is the hot path: the call is read and locked in one query, its transcript
    # in one more; what comes next is decided before anything is written.
    with transaction.atomic():
        call = load_call(call_id, params, lock=True)
        if call is None:
            return goodbye()
        template = call.campaign.template
        dialogue = dict(call.dialogue or {})
        transcript = list(call.turns.values_list("sequence", "role", "text", "digits"))
        if not transcript:
            return listen(call, [])  # a turn before any greeting: a stray request
        sequence = transcript[-1][0] + 1
        if not silence:
            transcript.append((sequence, Turn.Role.CALLER, speech_text, digits))
        dialogue["silences"] = dialogue.get("silences", 0) + 1 if silence else 0
        agent_turns = sum(role == Turn.Role.AGENT for _sequence, role, *_words in transcript)
        if is_opt_out(
            speech=speech_text,
            digits=digits,
            opt_out_digit=settings.OPT_OUT_DIGIT,
            language=template.language,
        ):
            next_step = "opt-out"
        elif dialogue["silences"] >= MAX_SILENCES:
            next_step = "silence"
        elif agent_turns >= settings.CALL_MAX_TURNS:  # the caller's line is not one
            next_step = "turn limit"
        elif silence:
            next_step = "still there"
        elif template.mode == CallTemplate.Mode.SCRIPTED:
            next_step = "script"
        else:
            next_step = "model"
        pending = None
        if next_step == "model":
            pending = _pending_reply(call, retrying=False, transcript=transcript)
            if on_model_turn is not None:
                on_model_turn(pending)
        if not silence:
            add_turn(
                call,
                role=Turn.Role.CALLER,
                text=speech_text,
                digits=digits,
                sequence=sequence,
                confidence=_confidence(params.get("Confidence")),
            )
        if next_step == "opt-out":
            return _opted_out(call, how=speech_text or f"key {digits}")
        if next_step in ("silence", "turn limit"):
            return _close(call, dialogue, why=next_step)
        if next_step == "still there":
            return _still_there(call, dialogue)
        if next_step == "script":
            return _scripted_turn(call, dialogue, speech=speech_text, digits=digits)
        _save_dialogue(call, dialogue)  # the silences in a row end here
        assert pending is not None  # the model's turn, built above
        return pending


def _lock(call: Call, *fields: str, **expressions: Any) -> dict[str, Any]:
    """Lock the call's row until the transaction ends and reload ``fields`` from it, in
    one query; ``expressions`` (annotations) are read in the same query. Returns all the
    values read."""
    values = one_or_none(
        Call.objects.select_for_update().filter(pk=call.pk).values(*fields, **expressions)
    )
    if values is None:
        raise Call.DoesNotExist(f"Call {call.pk} is gone.")
    for name in fields:
        setattr(call, name, values[name])
    return values


def _confidence(value: str | None) -> float | None:
    try:
        confidence = float(value) if value else None
    except ValueError:
        return None
    return confidence if confidence is not None and 0 <= confidence <= 1 else None


def _save_dialogue(call: Call, dialogue: dict) -> None:
    Call.objects.filter(pk=call.pk).update(dialogue=dialogue, updated_at=timezone.now())
    call.dialogue = dialogue


def _spoken_turn(call: Call, texts: list[str], **turn: Any) -> list[Speech]:
    """Voice ``texts`` and record them as one agent turn (with ``turn``'s fields and the
    clips played); the lines to say."""
    lines = speak(call, texts)
    spoken = " ".join(text for text in texts if text)
    if spoken:
        clips = [*turn.pop("clips", ()), *clip_ids(lines)]
        add_turn(call, role=Turn.Role.AGENT, text=spoken, clips=clips, **turn)
    return lines


def _say_and_listen(call: Call, dialogue: dict, texts: list[str]) -> str:
    _save_dialogue(call, dialogue)
    return listen(call, _spoken_turn(call, texts))


def _say_and_hang_up(
    call: Call, dialogue: dict, texts: list[str], *, voiced: list[Speech] = (), **turn: Any
) -> str:
    """Say ``voiced`` (lines already voiced and recorded), then ``texts`` (recorded as
    one turn with ``turn``'s fields), and hang up."""
    _save_dialogue(call, {**dialogue, "ended": True})
    return goodbye(call, lines=[*voiced, *_spoken_turn(call, texts, **turn)])


def _closing_line(call: Call) -> str:
    template = call.campaign.template
    if template.closing_line:
        text = line(call, "closing_line", template.closing_line)
        if text:
            return text
    with translation.override(template.language.split("-")[0]):
        return _("Thank you for your time. Goodbye.")


def _close(call: Call, dialogue: dict, *, why: str, **spoken: Any) -> str:
    """Say the closing line (after ``spoken``'s voiced lines, see _say_and_hang_up) and
    hang up, ``why`` kept in the dialogue."""
    logger.info("Call %s: closing (%s).", call.pk, why)
    return _say_and_hang_up(call, {**dialogue, "closed": why}, [_closing_line(call)], **spoken)


def _still_there(call: Call, dialogue: dict) -> str:
    with translation.override(call.campaign.template.language.split("-")[0]):
        question = _("Are you still there?")
    return _say_and_listen(call, dialogue, [question])


def _opted_out(call: Call, *, how: str, **turn: Any) -> str:
    from calls.outcomes import opt_out

    confirmation = opt_out(call=call, how=how)
    return _say_and_hang_up(call, call.dialogue or {}, [confirmation], **turn)


def _transfer(
    call: Call, dialogue: dict, texts: list[str], *, voiced: list[Speech] = (), **turn: Any
) -> str:
    """Say ``voiced`` (lines already voiced and recorded), then ``texts`` and the
    template's transfer line (recorded as one turn with ``turn``'s fields), then dial the
    campaign's transfer number."""
    campaign = call.campaign
    template = campaign.template
    transfer_to = limits.allowed_transfer_number(campaign)
    if not transfer_to:
        logger.warning(
            "Call %s: transfer asked but the campaign has no transfer number its partner's "
            "limits allow.",
            call.pk,
        )
        return _close(call, dialogue, why="no transfer number", voiced=voiced, **turn)
    texts = [*texts, line(call, "transfer_line", template.transfer_line)]
    _save_dialogue(call, {**dialogue, "transferred": True})
    lines = _spoken_turn(call, texts, **turn)
    Call.objects.filter(pk=call.pk).update(flags={**call.flags, "transferred": True})
    return telephony.transfer_twiml(
        lines=[*voiced, *lines],
        number=transfer_to,
        caller_id=call.our_number,
        timeout=campaign.ring_timeout_seconds,
        action=webhook_url("transfer-ended", call.pk),
    )


def _scripted_turn(call: Call, dialogue: dict, *, speech: str, digits: str) -> str:
    steps = call.campaign.template.steps
    step_id = dialogue.get("step")
    if step_id is None:
        return _close(call, dialogue, why="script finished")
    step = next_turn(
        steps, step_id=step_id, speech=speech, digits=digits, retries=dialogue.get("retries", 0)
    )
    if step.outcome:
        outcome = {**call.outcome, **step.outcome}
        Call.objects.filter(pk=call.pk).update(**split_outcome(outcome))
        call.outcome = outcome
    dialogue = {**dialogue, "step": step.step_id, "retries": step.retries}
    if step.exit == "opt_out":
        return _opted_out(call, how=speech or f"key {digits}")
    if step.exit == "transfer":
        return _transfer(call, dialogue, [])
    if step.exit == "end":
        return _close(call, dialogue, why="script end" if step.understood else "not understood")
    field = _step_field(steps, step.step_id, retry=not step.understood)
    return _say_and_listen(call, dialogue, [line(call, field, step.say)])


def _step_field(steps: list[dict], step_id: str | None, *, retry: bool) -> str:
    index = next((i for i, step in enumerate(steps) if step.get("id") == step_id), 0)
    return f"steps.{index}.{'retry_prompt' if retry else 'prompt'}"


# --- AI turns -------------------------------------------------------------------------------

# The blocking work of async webhooks (database, speech rendering) runs in this pool of
# threads, not in Django's single thread for sync code, so that calls do not queue behind
# each other. Between two pieces of work a thread gives its database connection back to
# the web process's pool (DATABASE_POOL), so idle threads hold none.
_THREADS = ThreadPoolExecutor(max_workers=settings.WEBHOOK_THREADS, thread_name_prefix="webhook")


def in_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` as a coroutine run in the webhooks' pool of threads, in a copy of the
    caller's context (its log fields, its language).

    A plain executor, not asgiref's ``sync_to_async``: a turn makes about seven such
    trips, and asgiref's bookkeeping for each (thread-sensitive contexts, its locals,
    the task it tracks) cost more CPU than the trip itself
    (docs/decisions/0003-asgi-webhook-fast-path.md). (An ``async_to_sync`` in
    ``function`` would run on a loop of its own, not the caller's; nothing here has one.)
    """

    def run(args: tuple, kwargs: dict) -> T:
        try:
            return function(*args, **kwargs)
        finally:
            # As at the end of a request: the connection goes back to the pool (or, with
            # no pool, is closed).
            close_old_connections()

    @functools.wraps(function)
    async def threaded(*args: Any, **kwargs: Any) -> T:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            _THREADS, context.run, run, args, kwargs
        )

    return threaded


# How long a continuation request waits for more of the reply before it keeps the line
# open with a short pause and asks again (within the webhook's own deadline).
CONTINUE_WAIT_SECONDS = 8.0
# How long a reply in progress stays readable by continuation requests.
REPLY_TTL_SECONDS = 300
# How long the reply's own answer may go past the time its first line had to be voiced
# by, when that line's voicing has not handed it back yet (a thread stuck on a socket).
VOICING_GRACE_SECONDS = 0.5


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


def _pending_reply(
    call: Call, *, retrying: bool, transcript: list[tuple[int, str, str, str]] | None = None
) -> PendingReply:
    """What the model needs to answer on ``call``; ``transcript`` is its turns as
    (sequence, role, text, digits) when the caller has just read them."""
    from calls.outcomes import answer_schema

    template = call.campaign.template
    zone = _contact_zone(call)
    missed = _moment((call.dialogue or {}).get("missed_call_at")) if call.is_inbound else None
    instructions = _instructions(call)
    answers = answer_schema(schema=template.outcome_schema)
    system = conversation.system_prompt(
        instructions=instructions.text,
        now_local=timezone.now().astimezone(zone),
        language=template.language,
        inbound=call.is_inbound,
        missed_call_local=missed.astimezone(zone) if missed is not None else None,
        answer_fields=conversation.answer_fields(answers),
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
    text = call.campaign.template.instructions
    try:
        return render_instructions(text=text, context=contact_context(contact=call.contact))
    except TemplateRenderError as error:
        logger.warning("Call %s: instructions not rendered: %s", call.pk, error)
        return Instructions(text="", data={})


async def reply(pending: PendingReply) -> str:
    """The model's reply to ``pending`` as TwiML; its sentences are voiced while the
    model still writes.

    The answer leaves as soon as the first sentence is voiced when more is to follow
    (the model still writes, or wrote more): the first line inside a <Gather>, so that
    the caller can speak over it (the turn webhook then hears them, ``interrupted``),
    then a <Redirect> to the continuation webhook, which serves the rest once it is
    voiced and recorded (``continue_reply``). The caller hears the start of the reply
    while the rest is made, and never waits for the reply to be recorded. A reply of one
    line, whole by the time it is voiced, is answered whole; so is any reply that no
    continuation could find (the cache is down).

    The answer leaves by the webhook's deadline (``pending.deadline``): a first line not
    voiced by then is spoken with <Say>; a model that fails, times out or has not written
    a first sentence by then gets a holding line and one more try (``retry=1``); failing
    again, the call closes politely.
    """
    call = pending.call
    loop = asyncio.get_running_loop()
    first_line: asyncio.Future[None] = loop.create_future()
    sentences_said: list[str] = []
    voicing: list[asyncio.Task[Speech]] = []
    speech_started: list[float] = []
    # One event loop runs both sides, so these flags settle who speaks the first line:
    # each is read and set with no await in between. "first_said": the first line left
    # spoken with <Say>, its clip not ready in time.
    progress = {"written": False, "early_sent": False, "final_started": False, "first_said": False}
    token = uuid.uuid4().hex
    # Whether a continuation could find this reply: the mark it looks for is stored
    # while the first sentence is voiced, not after (a reply answered whole leaves it to
    # expire).
    continuable: list[asyncio.Task[bool]] = []

    async def on_sentence(sentence: str) -> None:
        speech_started.append(time.monotonic())
        sentences_said.append(sentence)
        task = asyncio.create_task(voice(sentence, after=first_line if voicing else None))
        voicing.append(task)
        if len(voicing) == 1:
            task.add_done_callback(lambda _task: first_line.done() or first_line.set_result(None))
            continuable.append(asyncio.create_task(_mark_in_progress(call.pk, token)))

    async def voice(sentence: str, *, after: asyncio.Future[None] | None) -> Speech:
        if after is None:
            deadline = pending.deadline  # the caller is waiting for this one
        else:
            # The first line is what the caller waits for: the sentences written while it
            # is voiced wait for it, rather than compete with it for this process. They
            # are served by a continuation, with a deadline of its own.
            await asyncio.wait([after])
            deadline = max(pending.deadline, time.monotonic() + _line_budget())
        return await in_thread(speech_for_call)(
            call=call, text=sentence, new_text=True, deadline=deadline
        )

    async def run() -> Acted:
        try:
            answer = await conversation.stream_reply(
                system=pending.system,
                history=pending.history,
                contact=pending.contact,
                answer_schema=pending.answer_schema,
                on_sentence=on_sentence,
            )
        except (conversation.ConversationUnavailable, conversation.ConversationRejected) as error:
            for task in voicing:
                task.cancel()
            logger.warning("Call %s: the model failed (%s).", call.pk, error)
            progress["final_started"] = True
            return Acted(twiml=await in_thread(_model_failed)(call, retrying=pending.retrying))
        except asyncio.CancelledError:
            for task in voicing:
                task.cancel()
            raise
        progress["written"] = True
        lines = list(await asyncio.gather(*voicing))
        speech_ms = int((time.monotonic() - speech_started[0]) * 1000) if speech_started else 0
        total_ms = int((time.monotonic() - pending.started) * 1000)
        if len(lines) > 1 and await continuable[0]:
            progress["early_sent"] = True  # the first line leaves now, if it has not
        progress["final_started"] = True
        return await in_thread(_act_locked)(
            call,
            answer,
            lines,
            timings=(answer.model_ms, speech_ms, total_ms),
            early=(token, int(progress["first_said"])) if progress["early_sent"] else None,
        )

    whole = asyncio.create_task(run())
    try:
        while not progress["early_sent"]:
            if whole.done() or progress["final_started"]:
                return (await whole).twiml
            if first_line.done() and continuable[0].done():
                if voicing[0].exception() is not None or not continuable[0].result():
                    return (await whole).twiml  # no first line, or no continuation to find
                if progress["written"] and len(voicing) == 1:
                    return (await whole).twiml  # the first line is the whole reply
                progress["early_sent"] = True
                break
            left = pending.deadline + VOICING_GRACE_SECONDS - time.monotonic()
            if left <= 0:
                if continuable and continuable[0].done() and continuable[0].result():
                    # The first sentence is written but not voiced in time: Twilio says it.
                    logger.warning("Call %s: the first line was not voiced in time.", call.pk)
                    progress["early_sent"] = progress["first_said"] = True
                    break
                # Nothing to say yet: a holding line, and the model asked once more.
                logger.warning("Call %s: the model wrote no first line in time.", call.pk)
                whole.cancel()
                progress["final_started"] = True
                return await in_thread(_model_failed)(call, retrying=pending.retrying)
            waits = [whole, first_line, *continuable]
            await asyncio.wait(
                [step for step in waits if not step.done()],
                timeout=left,
                return_when=asyncio.FIRST_COMPLETED,
            )
    except asyncio.CancelledError:
        whole.cancel()  # nobody will say this reply: it is not made or recorded either
        raise
    # The first sentence is ready and more is coming: it is said now, the rest follows.
    background = asyncio.create_task(_publish(call.pk, token, whole, heard=sentences_said[0]))
    _BACKGROUND[token] = background
    background.add_done_callback(lambda _task: _BACKGROUND.pop(token, None))
    language = call.campaign.template.language
    first = (
        Speech(text=sentences_said[0], language=language, fallback_reason="deadline")
        if progress["first_said"]
        else voicing[0].result()
    )
    return telephony.interruptible_twiml(
        lines=[first],
        action=webhook_url("turn", call.pk) + f"?reply={token}",
        language=language,
        next_url=_continue_url(call.pk, token),
    )


def _line_budget() -> float:
    """How long a line after the first may take to voice before it is said with <Say>."""
    return settings.WEBHOOK_DEADLINE_SECONDS / 2


# Replies of this process still being made after their first line left, by token: kept
# referenced, and awaited directly by a continuation this process serves.
_BACKGROUND: dict[str, asyncio.Task] = {}


def _reply_key(call_id: int, token: str) -> str:
    return f"calls:reply:{call_id}:{token}"


def _interrupted_key(call_id: int, token: str) -> str:
    return f"calls:reply:{call_id}:{token}:interrupted"


def _continue_url(call_id: int, token: str) -> str:
    return webhook_url("continue", call_id) + f"?reply={token}"


async def _store(call_id: int, token: str, value: dict) -> None:
    await in_thread(cache.set)(_reply_key(call_id, token), value, REPLY_TTL_SECONDS)


async def _mark_in_progress(call_id: int, token: str) -> bool:
    """Store the mark of a reply in progress; False (logged) when it cannot be stored."""
    try:
        await _store(call_id, token, {"done": False})
    except Exception:
        logger.exception("Call %s: a reply in progress cannot be continued.", call_id)
        return False
    return True


async def _publish(call_id: int, token: str, whole: asyncio.Task[Acted], *, heard: str) -> None:
    """Keep the end of the reply where a continuation request (perhaps served by another
    process) finds it, with what an interruption needs to know (``interrupted``)."""
    try:
        acted = await whole
    except Exception:
        logger.exception("Call %s: the reply in progress failed.", call_id)
        acted = Acted(twiml=goodbye())
    await _store(
        call_id,
        token,
        {
            "done": True,
            "twiml": acted.twiml,
            "sequence": acted.sequence,
            "terminal": acted.terminal,
            "interrupted": acted.interrupted,
            "heard": heard,
        },
    )


async def _finished_reply(call_id: int, token: str, *, wait: float) -> dict | None:
    """The state of reply ``token`` once it is recorded, waiting up to ``wait`` seconds:
    {"done": True, ...} (see _publish); {"done": False} when it is still being made;
    None when no such reply is known."""
    local = _BACKGROUND.get(token)
    if local is not None and local.get_loop() is asyncio.get_running_loop():
        # Made here: wait for it without polling the cache.
        done, _pending = await asyncio.wait([local], timeout=wait)
        if not done:
            return {"done": False}
    deadline = time.monotonic() + wait
    while True:
        state = await in_thread(cache.get)(_reply_key(call_id, token))
        if state is None or state.get("done") or time.monotonic() >= deadline:
            return state
        await asyncio.sleep(0.05)


def _wait_within_deadline() -> float:
    """How long a webhook may wait for a reply in progress: CONTINUE_WAIT_SECONDS, less
    when its deadline is nearer (half a second kept to answer)."""
    left = deadlines.left(deadlines.current())
    if left is None:
        return CONTINUE_WAIT_SECONDS
    return max(0.0, min(CONTINUE_WAIT_SECONDS, left - 0.5))


async def continue_reply(*, call_id: int, token: str) -> str:
    """What comes after the first sentence of a reply in progress: the rest once the
    model and speech are done (then listen, hang up or transfer). While it is still being
    made the caller hears a short pause and Twilio asks again."""
    state = await _finished_reply(call_id, token, wait=_wait_within_deadline())
    if state is None:
        logger.warning("Call %s: continuation of an unknown reply %s.", call_id, token)
        return goodbye()
    if state.get("done"):
        return state["twiml"]
    return telephony.pause_twiml(seconds=1, next_url=_continue_url(call_id, token))


async def interrupted(*, call_id: int, token: str) -> str | None:
    """The caller spoke over the first line of reply ``token`` (the <Gather> around it
    heard them). The reply is kept as heard: its first line only, and what it would have
    done at its end (end the call, transfer it) is undone, since the caller's words come
    next. Returns None to go on with the caller's turn, or the reply's own answer when it
    opted the callee out (the confirmation is said whatever was said over it).

    The mark left here tells a reply not recorded yet to record itself so; one already
    recorded is cut back (``_cut_back``)."""
    try:
        await in_thread(cache.set)(_interrupted_key(call_id, token), True, REPLY_TTL_SECONDS)
    except Exception:
        logger.exception("Call %s: the interruption of reply %s is not kept.", call_id, token)
    # Half the time left: the caller's own turn must be answered in the rest.
    state = await _finished_reply(call_id, token, wait=_wait_within_deadline() / 2)
    if not state or not state.get("done"):
        # Not recorded yet (it will see the mark), or unknown: the caller's turn goes on.
        return None
    if state.get("terminal") == "opt_out":
        return state["twiml"]
    if not state.get("interrupted") and state.get("sequence") is not None:
        await in_thread(_cut_back)(
            call_id, sequence=state["sequence"], heard=state["heard"], terminal=state["terminal"]
        )
    return None


def _cut_back(call_id: int, *, sequence: int, heard: str, terminal: str | None) -> None:
    """Keep reply turn ``sequence`` of call ``call_id`` as the caller heard it (``heard``,
    its first line), and undo the end of the dialogue (``terminal``) it recorded."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return
        Turn.objects.filter(call=call, sequence=sequence, role=Turn.Role.AGENT).update(text=heard)
        if terminal not in ("end_call", "transfer_to_human"):
            return
        dialogue = {
            key: value
            for key, value in (call.dialogue or {}).items()
            if key not in ("ended", "transferred") and (key, value) != ("closed", "model")
        }
        flags = {key: value for key, value in call.flags.items() if key != "transferred"}
        Call.objects.filter(pk=call.pk).update(
            dialogue=dialogue, flags=flags, updated_at=timezone.now()
        )
    logger.info("Call %s: the caller spoke over the reply; kept as heard.", call_id)


def _model_failed(call: Call, *, retrying: bool) -> str:
    with transaction.atomic():
        _lock(call, "dialogue", "answers", "flags")
        if retrying:
            return _close(call, call.dialogue or {}, why="model failed twice")
        return _hold(call)


def _act_locked(
    call: Call,
    answer: conversation.Reply,
    lines: list[Speech],
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
        if cache.get(_interrupted_key(call.pk, token)):
            heard = lines[0].text if lines else None
            played = lines[:1]
        if first_said:  # its clip came too late to be played
            record_speech_fallback(call=call)
            played = played[1:]
    with transaction.atomic():
        # The call locked and re-read with its transcript's last sequence, in one query.
        last = Turn.objects.filter(call=OuterRef("pk")).order_by("-sequence").values("sequence")
        read = _lock(call, "dialogue", "answers", "flags", last_sequence=Subquery(last[:1]))
        last_sequence = read["last_sequence"]
        return _act(
            call,
            answer,
            lines[1:] if early is not None else lines,
            timings=timings,
            sequence=0 if last_sequence is None else last_sequence + 1,
            heard=heard,
            clips=clip_ids(played),
        )


def _contact_zone(call: Call) -> ZoneInfo:
    contact = call.contact
    zones = [contact.time_zone] if contact.time_zone else list(time_zones_for(contact.phone))
    try:
        return ZoneInfo(zones[0]) if zones else ZoneInfo(settings.TIME_ZONE)
    except (KeyError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def _moment(value: object) -> datetime.datetime | None:
    """An aware ISO 8601 moment kept in a call's dialogue; None for anything else."""
    try:
        moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _hold(call: Call) -> str:
    """A short holding line while the model gets one more try."""
    language = call.campaign.template.language
    with translation.override(language.split("-")[0]):
        holding = _("One moment, please.")
    return telephony.hold_twiml(
        lines=_spoken_turn(call, [holding]), retry_url=webhook_url("turn", call.pk) + "?retry=1"
    )


# The tools after which the dialogue does not go on: the call ends or leaves us.
TERMINAL_TOOLS = ("opt_out", "transfer_to_human", "end_call")


def _act(
    call: Call,
    reply: conversation.Reply,
    lines: list[Speech],
    *,
    timings: tuple[int, int, int],
    sequence: int,
    heard: str | None = None,
    clips: list[int] = (),
) -> Acted:
    """Record the model's line (as turn ``sequence``) with its timings and tokens, apply
    its tools, answer the TwiML.

    ``heard`` (the caller spoke over the reply, having heard that much) records only
    that, and leaves out the call's end or transfer: the caller's words come next. An
    opt-out is applied whatever was heard."""
    model_ms, speech_ms, total_ms = timings
    dialogue = dict(call.dialogue or {})
    names = {action.name for action in reply.actions}
    terminal = next((name for name in TERMINAL_TOOLS if name in names), None)
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
    }
    if terminal == "opt_out":
        return Acted(
            twiml=_opted_out(call, how=_("the AI model's opt_out tool"), **usage),
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
        if dialogue != call.dialogue:
            _save_dialogue(call, dialogue)
        return Acted(twiml=listen(call, []), sequence=recorded, interrupted=True)
    if terminal == "transfer_to_human":
        twiml = _transfer(call, dialogue, [], voiced=lines, **usage)
    elif terminal == "end_call":
        if reply.text:
            _save_dialogue(call, {**dialogue, "ended": True, "closed": "model"})
            twiml = goodbye(call, lines=lines)
        else:
            twiml = _close(call, dialogue, why="model", voiced=lines, **usage)
    else:
        if dialogue != call.dialogue:  # else the caller's turn, just written, touched the call
            _save_dialogue(call, dialogue)
        twiml = listen(call, lines)
    return Acted(twiml=twiml, sequence=recorded, terminal=terminal)


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
        _lock(call, "dialogue", "flags")
        flags = {**call.flags, "transfer_status": status}
        if status in TRANSFER_TAKEN or not (call.dialogue or {}).get("transferred"):
            # A repeat of a failed transfer's callback finds the transfer already undone.
            Call.objects.filter(pk=call.pk).update(flags=flags, updated_at=timezone.now())
            return goodbye(call)
        logger.info("Call %s: nobody took the transfer (%s).", call.pk, status)
        flags.update(transferred=False, transfer_failed=True)
        template = call.campaign.template
        dialogue = {**call.dialogue, "transferred": False}
        text = line(call, "transfer_failed_line", template.transfer_failed_line)
        if template.mode == CallTemplate.Mode.SCRIPTED:
            flags["callback"] = True  # the script cannot ask when: the retry delay says
            Call.objects.filter(pk=call.pk).update(flags=flags)
            call.flags = flags
            return _say_and_hang_up(call, dialogue, [text or _transfer_failed_line(call)])
        Call.objects.filter(pk=call.pk).update(flags=flags)
        call.flags = flags
        return _say_and_listen(call, dialogue, [text or _transfer_failed_line(call)])


def _transfer_failed_line(call: Call) -> str:
    """The standard apology when nobody takes a transfer, in the call's language."""
    template = call.campaign.template
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
