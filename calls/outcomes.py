"""What a conversation decides for its contact while the call is still going on."""

from __future__ import annotations

import datetime
import enum
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit import services as audit
from callcenter.metrics import OPT_OUTS
from callcenter.text import truncate
from calls import conversation
from calls.costs import call_cost
from calls.models import CALL_OUTCOME_KEYS as CALL_OUTCOME_KEYS
from calls.models import Call, split_outcome
from calls.services import record_plays
from campaigns.deliveries import emit_event
from campaigns.models import Contact, DoNotCallSource, WebhookEvent
from campaigns.phones import time_zones_for
from campaigns.services import add_do_not_call, opt_out_contact, schedule_contact_callback
from templates.rendering import TemplateRenderError, contact_context, render_line_to_fit

logger = logging.getLogger(__name__)

# Sent once a call has ended and its outcome is known (``call_id``, ``result`` of
# ``conclude_call``). Partner webhooks are not its listeners: the services that send it
# emit call.completed themselves.
call_concluded = Signal()


def answer_schema(*, schema: object) -> dict:
    """The part of a template's outcome ``schema`` that the model may record during the
    call (record_answer): its top-level properties but CALL_OUTCOME_KEYS."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    properties = {
        name: spec for name, spec in schema["properties"].items() if name not in CALL_OUTCOME_KEYS
    }
    return {**schema, "properties": properties}


def opt_out(*, call: Call, how: str) -> str:
    """The callee asked not to be called again: the number goes on the partner's
    do-not-call list and the contact is closed as opted out, both committed before this
    returns (so before the TwiML answer leaves), and partner webhooks get
    contact.opted_out. Returns the confirmation to speak.

    ``how`` says what the callee did (words, a key, the model's tool), kept as the reason.
    """
    campaign = call.campaign
    contact = call.contact
    with transaction.atomic():
        _entry, created = add_do_not_call(
            phone=contact.phone,
            partner=campaign.partner,
            source=DoNotCallSource.OPT_OUT,
            reason=truncate(f"call {call.pk} ({campaign.name}): {how}"),
        )
        opt_out_contact(
            contact=contact,
            reason=_("Asked not to be called again (%(how)s).") % {"how": how},
            now=timezone.now(),
        )
        flags = {**call.flags, "opted_out": True}
        Call.objects.filter(pk=call.pk).update(flags=flags)
        call.flags = flags
        # Keyed by the contact: one event however many times the callee says it.
        emit_event(
            partner=campaign.partner,
            event_type=WebhookEvent.CONTACT_OPTED_OUT,
            payload={
                "contact": {**_contact_data(contact), "state": Contact.State.OPTED_OUT},
                "campaign_id": campaign.pk,
                "call_id": call.pk,
                "direction": call.direction,
                "how": how,
                "opted_out_at": timezone.now(),
            },
            key=f"contact:{contact.pk}",
        )
        # Last in the transaction: the audit chain's head stays locked until it commits.
        audit.record(
            audit.Action.CONTACT_OPTED_OUT,
            partner_id=campaign.partner_id,
            subject_phone=contact.phone,
            object_type="campaigns.contact",
            object_id=contact.pk,
            actor=audit.CALLEE,
            details={
                "campaign_id": campaign.pk,
                "call_id": call.pk,
                # Never the words themselves: they may name the callee.
                "how": "key" if how.startswith("key ") else "spoken",
                "do_not_call": "added" if created else "already listed",
            },
        )
    if created:
        transaction.on_commit(OPT_OUTS.inc)
    logger.info("Call %s: the callee opted out (%s).", call.pk, how)
    confirmation = confirmation_line(call)
    return confirmation


def confirmation_line(call: Call) -> str:
    """The template's opt-out confirmation for the contact, or a default in its language."""
    template = call.campaign.template
    assert template is not None  # a campaign calls only with a template (start_campaign)
    if template.opt_out_confirmation:
        try:
            return render_line_to_fit(
                text=template.opt_out_confirmation,
                context=contact_context(contact=call.contact),
                field="opt_out_confirmation",
            )
        except TemplateRenderError as error:
            logger.warning("Call %s: opt-out confirmation not rendered: %s", call.pk, error)
    with translation.override(template.language.split("-")[0]):
        return _("Understood: we will not call you again. Goodbye.")


# --- After the call ---------------------------------------------------------------------


class Concluded(enum.StrEnum):
    """What ``conclude_call`` did: the ``result`` of ``call_concluded`` and the
    ``extraction`` of call.completed."""

    EXTRACTED = "extracted"  # the model drew the outcome and summary from the transcript
    FAILED = "failed"  # the model's answer was not valid, or it could not be had at all
    NO_CONVERSATION = "no_conversation"  # the callee never said a word: nothing to extract
    # No model configured: a scripted call keeps the outcome its steps set.
    NOT_CONFIGURED = "not_configured"


def conclude_call(*, call_id: int) -> Concluded:
    """Once a call has ended: its outcome per the template's schema and a summary, drawn
    from the transcript by the model; then partner webhooks get call.completed and
    ``call_concluded`` is sent. Returns what was done (Concluded): extracted, failed,
    no_conversation or not_configured (a scripted call without a model keeps the outcome
    its steps set).

    Answers the conversation recorded live (tools, script) stay as they are: the model
    only fills the fields they left out. A callback time found only by the model moves
    the contact (done by this call) to a retry at that time. Raises
    ConversationUnavailable when the model cannot be reached (the task retries).
    """
    call = Call.objects.select_related("campaign__template", "contact").get(pk=call_id)
    template = call.campaign.template
    assert template is not None  # a campaign calls only with a template (start_campaign)
    # A reply recorded after the call's end (its last words played while it hung up)
    # has its clips counted now.
    record_plays(call=call)
    turns = list(call.turns.exclude(text="", digits=""))
    if not any(turn.role == "caller" for turn in turns):
        result = Concluded.NO_CONVERSATION
    elif not conversation.is_configured():
        result = Concluded.NOT_CONFIGURED
    else:
        transcript = [
            {
                "role": "assistant" if turn.role == "agent" else "user",
                "content": turn.text or turn.digits,
            }
            for turn in turns
            if turn.role in ("agent", "caller")
        ]
        extraction = conversation.extract_outcome(
            transcript=transcript, schema=template.outcome_schema or {}, language=template.language
        )
        _keep_extraction(call, extraction)
        result = Concluded.FAILED if extraction.failed else Concluded.EXTRACTED
    _emit_call_completed(call_id=call_id, extraction=result)
    transaction.on_commit(lambda: call_concluded.send(sender=Call, call_id=call_id, result=result))
    return result


def _emit_call_completed(*, call_id: int, extraction: Concluded) -> None:
    """Tell the partner's webhooks the call is over, once per call (a conclusion run twice
    sends nothing new)."""
    call = Call.objects.select_related("campaign__partner", "contact").get(pk=call_id)
    emit_event(
        partner=call.campaign.partner,
        event_type=WebhookEvent.CALL_COMPLETED,
        payload={
            "call_id": call.pk,
            "campaign_id": call.campaign_id,
            "contact": _contact_data(call.contact),
            # inbound: the contact rang us back (attempt null); outbound: we called.
            "direction": call.direction,
            "attempt": call.attempt,
            "status": call.status,
            "answered_by": call.answered_by,
            "started_at": call.dialed_at,
            "answered_at": call.answered_at,
            "ended_at": call.ended_at,
            "duration_seconds": call.duration_seconds,
            # A string, as money should be: "0.01300". Known some time after the call
            # (call.priced follows then); null here until it is.
            "price": None if call.price is None else str(call.price),
            "price_unit": call.price_unit,
            "cost": call_cost(call).as_dict(),
            # The model's raw answer is kept for staff, not sent.
            "outcome": {k: v for k, v in call.outcome.items() if k != "extraction_raw"},
            "summary": call.summary,
            "extraction": extraction,
        },
        key=f"call:{call.pk}",
    )


def emit_call_priced(*, call: Call) -> None:
    """Tell the partner's webhooks what the ended ``call`` cost, once its telephony price
    is settled (known, or known never to come): call.priced, once per call."""
    call = Call.objects.select_related("campaign__partner").get(pk=call.pk)
    emit_event(
        partner=call.campaign.partner,
        event_type=WebhookEvent.CALL_PRICED,
        payload={
            "call_id": call.pk,
            "campaign_id": call.campaign_id,
            "direction": call.direction,
            "price": None if call.price is None else str(call.price),
            "price_unit": call.price_unit,
            "price_status": call.price_status,
            "cost": call_cost(call).as_dict(),
        },
        key=f"call:{call.pk}",
    )


def _contact_data(contact: Contact) -> dict[str, object]:
    return {
        "id": contact.pk,
        "phone": contact.phone,
        "external_id": contact.external_id,
        "state": contact.state,
    }


def _keep_extraction(call: Call, extraction: conversation.Extraction) -> None:
    with transaction.atomic():
        call = Call.objects.select_for_update().select_related("contact").get(pk=call.pk)
        outcome = call.outcome
        if extraction.failed:
            outcome.update(
                extraction_failed=True,
                extraction_error=truncate(extraction.error),
                extraction_raw=extraction.raw[:5000],
            )
        else:
            outcome = {**(extraction.data or {}), **outcome}
        # Each extraction bills its tokens: one run again (a retried task) adds its own.
        Call.objects.filter(pk=call.pk).update(
            **split_outcome(outcome),
            summary=extraction.summary[:2000],
            extraction_model=extraction.model or call.extraction_model,
            extraction_prompt_tokens=Coalesce(F("extraction_prompt_tokens"), 0)
            + (extraction.prompt_tokens or 0),
            extraction_completion_tokens=Coalesce(F("extraction_completion_tokens"), 0)
            + (extraction.completion_tokens or 0),
            updated_at=timezone.now(),
        )
        callback = _extracted_callback(call, outcome)
        if callback is None or "callback_at" in call.flags:
            return
        moved = schedule_contact_callback(
            contact_id=call.contact_id,
            at=callback,
            reason=_("Asked to be called back at %(time)s.")
            % {"time": callback.astimezone(callback.tzinfo).strftime("%Y-%m-%d %H:%M")},
            unchanged_since=call.ended_at or call.created_at,
            now=timezone.now(),
        )
        if moved:
            logger.info("Call %s: callback at %s found in the transcript.", call.pk, callback)


def _extracted_callback(call: Call, outcome: dict) -> datetime.datetime | None:
    value = outcome.get("callback_at")
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if at.tzinfo is None:
        contact = call.contact
        zones = [contact.time_zone] if contact.time_zone else list(time_zones_for(contact.phone))
        at = at.replace(tzinfo=ZoneInfo(zones[0] if zones else settings.TIME_ZONE))
    return at


def extraction_unavailable(*, call_id: int, reason: str) -> None:
    """The model could not be had for the call's outcome: say so on the call, and tell
    partner webhooks and listeners the call is over all the same."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        flags = {**call.flags, "extraction_failed": True}
        flags["extraction_error"] = truncate(reason)
        Call.objects.filter(pk=call_id).update(flags=flags, updated_at=timezone.now())
        _emit_call_completed(call_id=call_id, extraction=Concluded.FAILED)
    transaction.on_commit(
        lambda: call_concluded.send(sender=Call, call_id=call_id, result=Concluded.FAILED)
    )
