"""A call's dialogue: where its conversation stands (``Dialogue``, kept on the call), its
transcript (``add_turn``), the lines it speaks (``line``, ``speak``), and the ways a turn
can end that every decision of ``calls.flow`` shares: listen, hang up, close, transfer,
hold. What is said reaches the caller through the call's transport (``calls.transports``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone, translation
from django.utils.translation import gettext as _

from callcenter.queries import one_or_none
from calls import transports
from calls.models import Call, Turn
from calls.services import speech_for_call
from campaigns import limits
from templates.models import CallTemplate
from templates.rendering import (
    LineTooLong,
    TemplateRenderError,
    contact_context,
    render_line,
    sentences,
)
from voices.clips import Speech

logger = logging.getLogger(__name__)


@dataclass
class Dialogue:
    """Where a call's conversation stands, kept on the call as JSON (``Call.dialogue``):
    ``from_json`` reads it and ``to_json`` writes the same JSON as ever (no migration)."""

    # Silences in a row, and the retries of the scripted step waiting for an answer.
    silences: int = 0
    retries: int = 0
    # A scripted call keeps its ``step`` (None once the script exits); an AI call has none.
    scripted: bool = False
    step: str | None = None
    # The call's last line was said (the flow hangs up), and why the flow closed it.
    ended: bool = False
    closed: str = ""
    # A transfer was asked (True), or nobody took it (False); None: no transfer.
    transferred: bool | None = None
    # An inbound call returning ours: when we called (ISO 8601, set by calls.inbound).
    missed_call_at: str = ""
    # Keys this code does not know, kept as they were.
    other: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("silences", "retries", "step", "ended", "closed", "transferred", "missed_call_at")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Dialogue:
        """The dialogue kept as ``data`` ({} or None: a call not answered yet)."""
        data = data or {}
        transferred = data.get("transferred")
        return cls(
            silences=_count(data.get("silences")),
            retries=_count(data.get("retries")),
            scripted="step" in data,
            step=data["step"] if isinstance(data.get("step"), str) else None,
            ended=data.get("ended") is True,
            closed=data["closed"] if isinstance(data.get("closed"), str) else "",
            transferred=transferred if isinstance(transferred, bool) else None,
            missed_call_at=str(data.get("missed_call_at") or ""),
            other={key: value for key, value in data.items() if key not in cls._KNOWN},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON kept on the call: the counts, and each other fact only once it is set."""
        data: dict[str, Any] = {**self.other, "silences": self.silences, "retries": self.retries}
        if self.scripted:
            data["step"] = self.step
        if self.ended:
            data["ended"] = True
        if self.closed:
            data["closed"] = self.closed
        if self.transferred is not None:
            data["transferred"] = self.transferred
        if self.missed_call_at:
            data["missed_call_at"] = self.missed_call_at
        return data

    def but(self, **changes: Any) -> Dialogue:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def aware_moment(value: object) -> datetime.datetime | None:
    """An aware ISO 8601 moment kept in a call's dialogue; None for anything else."""
    try:
        moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def template_of(call: Call) -> CallTemplate:
    """The call's script: its campaign's template, which a call is never dialled without."""
    template = call.campaign.template
    if template is None:
        raise CallTemplate.DoesNotExist(f"Call {call.pk}'s campaign has no template.")
    return template


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


def clip_ids(lines: Sequence[Speech]) -> list[int]:
    """The clips ``lines`` play, in order: what a turn keeps of its audio."""
    return [speech.clip_id for speech in lines if speech.clip_id is not None]


def speak(call: Call, texts: list[str]) -> list[Speech]:
    """How to speak each non-empty text on the call, sentence by sentence (clips, else
    <Say>): a template's lines are voiced ahead a sentence at a time
    (campaigns.prerendering), so a call finds them ready. On a transport that speaks
    text itself (ConversationRelay) the texts are the lines, in the template's language."""
    if transports.transport_for(call).speaks_text:
        language = template_of(call).language
        return [Speech(text=text, language=language) for text in texts if text]
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
    **fields: Any,
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


def listen(call: Call, lines: Sequence[Speech]) -> str:
    """Speak ``lines`` and wait for the callee's answer (the next turn)."""
    return transports.transport_for(call).listen(call, lines)


def goodbye(call: Call | None = None, *, lines: Sequence[Speech] = ()) -> str:
    """Speak ``lines`` (none by default) and hang up."""
    return transports.transport_for(call).hang_up(lines)


def lock_call(call: Call, *fields: str, **expressions: Any) -> dict[str, Any]:
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


def save_dialogue(call: Call, dialogue: Dialogue) -> None:
    """Keep ``dialogue`` on the call (its row locked by the caller)."""
    data = dialogue.to_json()
    Call.objects.filter(pk=call.pk).update(dialogue=data, updated_at=timezone.now())
    call.dialogue = data


def spoken_turn(call: Call, texts: list[str], **turn: Any) -> list[Speech]:
    """Voice ``texts`` and record them as one agent turn (with ``turn``'s fields and the
    clips played); the lines to say."""
    lines = speak(call, texts)
    spoken = " ".join(text for text in texts if text)
    if spoken:
        clips = [*turn.pop("clips", ()), *clip_ids(lines)]
        add_turn(call, role=Turn.Role.AGENT, text=spoken, clips=clips, **turn)
    return lines


def say_and_listen(call: Call, dialogue: Dialogue, texts: list[str]) -> str:
    save_dialogue(call, dialogue)
    return listen(call, spoken_turn(call, texts))


def say_and_hang_up(
    call: Call,
    dialogue: Dialogue,
    texts: list[str],
    *,
    voiced: Sequence[Speech] = (),
    **turn: Any,
) -> str:
    """Say ``voiced`` (lines already voiced and recorded), then ``texts`` (recorded as
    one turn with ``turn``'s fields), and hang up."""
    save_dialogue(call, dialogue.but(ended=True))
    return goodbye(call, lines=[*voiced, *spoken_turn(call, texts, **turn)])


def closing_line(call: Call) -> str:
    template = template_of(call)
    if template.closing_line:
        text = line(call, "closing_line", template.closing_line)
        if text:
            return text
    with translation.override(template.language.split("-")[0]):
        return _("Thank you for your time. Goodbye.")


def close(call: Call, dialogue: Dialogue, *, why: str, **spoken: Any) -> str:
    """Say the closing line (after ``spoken``'s voiced lines, see say_and_hang_up) and
    hang up, ``why`` kept in the dialogue."""
    logger.info("Call %s: closing (%s).", call.pk, why)
    return say_and_hang_up(call, dialogue.but(closed=why), [closing_line(call)], **spoken)


def still_there(call: Call, dialogue: Dialogue) -> str:
    with translation.override(template_of(call).language.split("-")[0]):
        question = _("Are you still there?")
    return say_and_listen(call, dialogue, [question])


def opted_out(call: Call, *, how: str, **turn: Any) -> str:
    from calls.outcomes import opt_out

    confirmation = opt_out(call=call, how=how)
    return say_and_hang_up(call, Dialogue.from_json(call.dialogue), [confirmation], **turn)


def transfer(
    call: Call,
    dialogue: Dialogue,
    texts: list[str],
    *,
    voiced: Sequence[Speech] = (),
    **turn: Any,
) -> str:
    """Say ``voiced`` (lines already voiced and recorded), then ``texts`` and the
    template's transfer line (recorded as one turn with ``turn``'s fields), then connect
    the caller to the campaign's transfer number."""
    campaign = call.campaign
    template = template_of(call)
    transfer_to = limits.allowed_transfer_number(campaign)
    if not transfer_to:
        logger.warning(
            "Call %s: transfer asked but the campaign has no transfer number its partner's "
            "limits allow.",
            call.pk,
        )
        return close(call, dialogue, why="no transfer number", voiced=voiced, **turn)
    texts = [*texts, line(call, "transfer_line", template.transfer_line)]
    save_dialogue(call, dialogue.but(transferred=True))
    lines = spoken_turn(call, texts, **turn)
    Call.objects.filter(pk=call.pk).update(flags={**call.flags, "transferred": True})
    return transports.transport_for(call).transfer(
        call,
        [*voiced, *lines],
        number=transfer_to,
        caller_id=call.our_number,
        timeout=campaign.ring_timeout_seconds,
    )


def hold(call: Call) -> str:
    """A short holding line while the model gets one more try."""
    with translation.override(template_of(call).language.split("-")[0]):
        holding = _("One moment, please.")
    return transports.transport_for(call).hold(call, spoken_turn(call, [holding]))
