"""Calls our numbers receive: people ringing back the number that called them.

Each of the account's numbers sends its calls here (Twilio's voice webhook of the number,
``calls:inbound``; ``preflight --configure-numbers`` sets it). Who rings is found by the
caller's number and the number called (``Contact.objects.calling_in``): a contact of a
campaign that calls from that number. The same person in several campaigns on the number
is taken as the contact we called last (then the newest one).

- A contact hears its campaign's conversation (calls.flow), greeted as someone who rang
  back (``flow.inbound_greeting``); an AI template's model is told so. The call is a Call
  of its own (direction inbound, no attempt): its turns, opt-out, transfer, status,
  recording, price and conclusion work as an outbound call's, and it sits in the
  contact's history. While it lasts the contact is not dialled (it has a live call), and
  a call of ours ringing the contact at that moment is hung up. Once it ends with a
  conversation the contact gets its final state as after one of ours and its pending
  retries are cancelled (calls.services).
- A contact whose number is on the partner's (or the global) do-not-call list, or who
  opted out, gets no sales conversation: they hear the company and that they will not be
  called, and are put through to a person when the campaign has a transfer number (they
  may be ringing to ask something). The call is kept in their history.
- Anyone else hears the company (the partner whose campaign last took up the number, else
  APP_NAME) and may press OPT_OUT_DIGIT to be put on the do-not-call list of every
  partner calling from that number (the global list when none does); when the campaign
  has a transfer number they are then put through to it.

Calling hours do not apply: the caller rang us. Every request is kept as a CallEvent
(``inbound``), a caller we do not know included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit import services as audit
from callcenter.metrics import OPT_OUTS
from callcenter.queries import one_or_none
from callcenter.text import truncate
from calls import deadlines, flow, telephony
from calls.callbacks import record_call_status, store_event
from calls.links import webhook_url
from calls.models import AnsweredBy, Call, CallDirection, CallEvent, CallStatus, Turn
from calls.tasks import hang_up_ringing_task
from campaigns import limits
from campaigns.models import Campaign, Contact, DoNotCall, DoNotCallSource, Partner
from campaigns.phones import E164_REGEX
from campaigns.services import add_do_not_call
from templates.rendering import sentences
from voices.clips import Speech, speech_for_line
from voices.services import voice_for_campaign

logger = logging.getLogger(__name__)

_PHONE = re.compile(E164_REGEX)


def inbound_url(name: str) -> str:
    """The absolute URL of the number-wide webhook ``calls:<name>`` (inbound, inbound-status,
    inbound-opt-out, inbound-fallback), on APP_URL as every URL Twilio is given."""
    return str(settings.APP_URL).rstrip("/") + reverse(f"calls:{name}")


# --- The call arrives --------------------------------------------------------------------


def answer(*, params: Mapping[str, str]) -> str:
    """TwiML for a call one of our numbers receives (see the module docstring)."""
    sid = params.get("CallSid", "")
    caller, called = params.get("From", ""), params.get("To", "")
    longest = Call._meta.get_field("provider_sid").max_length or 0  # 64, as it is declared
    if not sid or len(sid) > longest:
        logger.warning("Inbound call without a usable CallSid (%r); hung up.", sid[:80])
        return flow.goodbye()
    inbound = Call.objects.filter(direction=CallDirection.INBOUND)
    known = inbound.filter(provider_sid=sid).values_list("pk", "flags").first()
    if known is not None:
        # Asked again for a call already answered: nobody is greeted twice.
        call_id, flags = known
        if (flags or {}).get("do_not_call"):
            return _do_not_call(call_id=call_id, params=params)
        return flow.answer(call_id=call_id, params=params)
    contact = (
        Contact.objects.calling_in(phone=caller, number=called)
        .select_related("campaign__partner", "campaign__template")
        .first()
        if _PHONE.match(caller)
        else None
    )
    if contact is None:
        store_event(call=None, kind=CallEvent.Kind.INBOUND, params=params)
        logger.info("Inbound call %s from %s to %s: not a contact.", sid, caller, called)
        return _stranger(params=params, campaign=_campaign_on(called))
    campaign = contact.campaign
    blocked = (
        contact.state == Contact.State.OPTED_OUT
        or DoNotCall.objects.blocking(partner=campaign.partner, phone=contact.phone).exists()
    )
    call = _open_call(contact=contact, params=params, blocked=blocked)
    if call is None:
        # The contact's number is on another inbound call of ours (a line shared, or the
        # end of an earlier one never reported): this one is answered as a stranger's.
        store_event(call=None, kind=CallEvent.Kind.INBOUND, params=params)
        logger.warning("Inbound call %s: contact %s is on another call.", sid, contact.pk)
        return _stranger(params=params, campaign=campaign)
    logger.info("Inbound call %s: contact %s calls back (call %s).", sid, contact.pk, call.pk)
    if blocked:
        return _do_not_call(call_id=call.pk, params=params)
    return flow.answer(call_id=call.pk, params=params)


def _open_call(*, contact: Contact, params: Mapping[str, str], blocked: bool) -> Call | None:
    """The inbound Call for ``contact``, answered now; None when the contact already has a
    live inbound call. A call of ours still ringing them is hung up (after commit)."""
    now = timezone.now()
    missed = getattr(contact, "last_called_at", None)
    try:
        with transaction.atomic():
            call = Call.objects.create(
                campaign=contact.campaign,
                contact=contact,
                direction=CallDirection.INBOUND,
                attempt=None,
                status=CallStatus.IN_PROGRESS,
                provider_sid=params["CallSid"],
                from_number=params["From"],
                to_number=params.get("To", "")[:16],
                dialed_at=now,
                answered_at=now,
                answered_by=AnsweredBy.HUMAN,
                # Read by model_turns.pending_reply: the model is told when we called.
                dialogue={"missed_call_at": missed.isoformat()} if missed and not blocked else {},
            )
    except IntegrityError:
        # The same call asked for twice at once; else None (see above).
        return Call.objects.filter(
            direction=CallDirection.INBOUND, provider_sid=params["CallSid"]
        ).first()
    store_event(call=call, kind=CallEvent.Kind.INBOUND, params=params)
    ringing = Call.objects.filter(
        contact=contact,
        direction=CallDirection.OUTBOUND,
        status__in=[CallStatus.QUEUED, CallStatus.RINGING],
        provider_sid__isnull=False,
    ).values_list("pk", flat=True)
    for call_id in ringing:
        # celery-types knows not the DjangoTask class Celery's Django fix-up gives tasks.
        hang_up_ringing_task.delay_on_commit(call_id)  # type: ignore[attr-defined]
    return call


def hang_up_ringing(*, call_id: int) -> str:
    """Hang up our call ``call_id`` if it still rings: its contact is on the phone with us
    (they rang us meanwhile). Returns what was done."""
    call = one_or_none(Call.objects.filter(pk=call_id, direction=CallDirection.OUTBOUND))
    if call is None or call.status not in (CallStatus.QUEUED, CallStatus.RINGING):
        return "over"
    telephony.hang_up(sid=call.provider_sid)
    logger.info("Call %s hung up: its contact rang us meanwhile.", call.pk)
    return "hung_up"


def _do_not_call(*, call_id: int, params: Mapping[str, str]) -> str:
    """A contact on a do-not-call list (or opted out) rang us: no sales conversation. They
    hear the company and that they will not be called, then a person when the campaign
    has a transfer number, else goodbye. Kept on the call (flag ``do_not_call``)."""
    call = flow.load_call(call_id, params)
    if call is None:
        return flow.goodbye()
    campaign = call.campaign
    transfer_to = limits.allowed_transfer_number(campaign)
    template = campaign.template
    assert template is not None  # an inbound call is taken only by a campaign with a template
    language = template.language
    with translation.override(language.split("-")[0]):
        texts = [
            _("This is %(company)s. Your number is on our do-not-call list: we will not call you.")
            % {"company": campaign.partner.name}
        ]
        if transfer_to:
            texts.append(_("I am putting you through to a person."))
        bye = _("Goodbye.")
    lines = flow.speak(call, texts)
    flags = {"do_not_call": True, **({"transferred": True} if transfer_to else {})}
    with transaction.atomic():
        one_or_none(Call.objects.select_for_update().filter(pk=call.pk))
        if not call.turns.exists():
            flow.add_turn(
                call, role=Turn.Role.AGENT, text=" ".join(texts), clips=flow.clip_ids(lines)
            )
        Call.objects.filter(pk=call.pk).update(
            flags=flags,
            dialogue={**(call.dialogue or {}), "ended": True, "closed": "do not call"},
            updated_at=timezone.now(),
        )
    if transfer_to:
        # No "transferred" in the dialogue: however the transfer ends, the call ends with
        # it (flow.transfer_ended) and offers no callback.
        return telephony.transfer_twiml(
            lines=lines,
            number=transfer_to,
            caller_id=call.our_number,
            timeout=campaign.ring_timeout_seconds,
            action=webhook_url("transfer-ended", call.pk),
        )
    return flow.goodbye(call, lines=[*lines, Speech(text=bye, language=language)])


# --- A caller we do not know -------------------------------------------------------------


def _campaign_on(number: str) -> Campaign | None:
    """The campaign that calls from ``number`` and last changed state (started, most
    likely): whose company a stranger ringing the number is told about."""
    return (
        Campaign.objects.calling_from(number)
        .select_related("partner", "template")
        .order_by(F("state_changed_at").desc(nulls_last=True), "-pk")
        .first()
    )


def _voiced(texts: list[str], *, campaign: Campaign | None, language: str) -> list[Speech]:
    """How to say ``texts`` to a caller with no Call of theirs: in the campaign's voice,
    sentence by sentence, when it can be had within the webhook's deadline; else <Say>."""
    voice = voice_for_campaign(campaign=campaign) if campaign is not None else None
    return [
        speech_for_line(text=sentence, voice=voice, language=language, deadline=deadlines.current())
        for text in texts
        for sentence in sentences(text)
    ]


def _language(campaign: Campaign | None) -> str:
    if campaign is not None and campaign.template is not None:
        return campaign.template.language
    return settings.DEFAULT_CALL_LANGUAGE


def _stranger(*, params: Mapping[str, str], campaign: Campaign | None) -> str:
    """TwiML for a caller who is not a contact: the company, the opt-out offer (when the
    caller's number can be put on a list), a person when the campaign has a transfer
    number, and goodbye."""
    language = _language(campaign)
    company = campaign.partner.name if campaign is not None else settings.APP_NAME
    transfer_to = limits.allowed_transfer_number(campaign) if campaign is not None else ""
    offer = bool(_PHONE.match(params.get("From", "")))
    with translation.override(language.split("-")[0]):
        texts = [_("Thank you for calling %(company)s.") % {"company": company}]
        if offer:
            texts.append(
                _("If you do not want us to call you again, press %(digit)s now.")
                % {"digit": settings.OPT_OUT_DIGIT}
            )
        put_through = [_("Please hold: I am putting you through to a person.")]
        bye = [_("Goodbye.")]
    return telephony.message_twiml(
        lines=_voiced(texts, campaign=campaign, language=language),
        opt_out_action=inbound_url("inbound-opt-out") if offer else "",
        transfer_lines=_voiced(put_through, campaign=campaign, language=language)
        if transfer_to
        else [],
        transfer_to=transfer_to,
        caller_id=params.get("To", ""),
        goodbye=_voiced(bye, campaign=campaign, language=language),
    )


def opt_out(*, params: Mapping[str, str]) -> str:
    """The key a caller we do not know pressed after the opt-out offer. OPT_OUT_DIGIT puts
    their number on the do-not-call list of every partner whose campaigns call from the
    number they rang (the global list when none does), committed before the confirmation
    is spoken; any other key hears goodbye."""
    caller, called = params.get("From", ""), params.get("To", "")
    campaign = _campaign_on(called)
    language = _language(campaign)
    if params.get("Digits", "").strip() != settings.OPT_OUT_DIGIT or not _PHONE.match(caller):
        with translation.override(language.split("-")[0]):
            bye = _("Goodbye.")
        return telephony.hang_up_twiml(lines=_voiced([bye], campaign=campaign, language=language))
    partners: list[Partner | None] = list(
        Partner.objects.filter(campaigns__in=Campaign.objects.calling_from(called)).distinct()
    ) or [None]
    reason = (
        f"inbound call {params.get('CallSid', '')[:64]} to {called}: key {settings.OPT_OUT_DIGIT}"
    )
    with transaction.atomic():
        events = []
        for partner in partners:
            entry, created = add_do_not_call(
                phone=caller,
                partner=partner,
                source=DoNotCallSource.OPT_OUT,
                reason=truncate(reason),
            )
            if created:
                transaction.on_commit(OPT_OUTS.inc)
            # A caller we do not know has no contact: the entry is about the number.
            events.append(
                audit.Event(
                    audit.Action.CONTACT_OPTED_OUT,
                    partner_id=None if partner is None else partner.pk,
                    subject_phone=caller,
                    object_type="campaigns.donotcall",
                    object_id=entry.pk,
                    actor=audit.CALLEE,
                    details={
                        "how": "key",
                        "inbound": True,
                        "do_not_call": "added" if created else "already listed",
                    },
                )
            )
        audit.record_many(events)  # last: the chain's head stays locked until the commit
    logger.info("Inbound caller %s opted out (%d lists).", caller, len(partners))
    with translation.override(language.split("-")[0]):
        confirmation = _("Understood: we will not call you again. Goodbye.")
    return telephony.hang_up_twiml(
        lines=_voiced([confirmation], campaign=campaign, language=language)
    )


# --- Status and failures -----------------------------------------------------------------


def record_status(*, params: Mapping[str, str]) -> None:
    """The status callback of the numbers' calls (their StatusCallback): a contact's call
    is folded in as any call's status (calls.callbacks.record_call_status); a stranger's is
    kept, with no call."""
    call_id = _inbound_call_id(params)
    if call_id is None:
        store_event(call=None, kind=CallEvent.Kind.STATUS, params=params)
        return
    record_call_status(call_id=call_id, params=params)


def _inbound_call_id(params: Mapping[str, str]) -> int | None:
    """The id of the inbound call whose CallSid ``params`` carry; None for a stranger's
    (or any call that is not one our numbers received)."""
    sid = params.get("CallSid", "")
    calls = Call.objects.filter(direction=CallDirection.INBOUND, provider_sid=sid)
    return calls.values_list("pk", flat=True).first()


def fallback(*, params: Mapping[str, str]) -> str:
    """Twilio could not get or run our TwiML for an incoming call (the numbers'
    VoiceFallbackUrl): a contact's call gets the calls' own fallback (calls.flow.fallback);
    anyone else an apology naming the company and the opt-out offer. Works without the
    database when it is the cause."""
    try:
        call_id = _inbound_call_id(params)
        campaign = None if call_id is not None else _campaign_on(params.get("To", ""))
    except Exception:  # the database may be what failed: speak anyway
        logger.exception("Inbound fallback without the call's details.")
        call_id, campaign = None, None
    if call_id is not None:
        return flow.fallback(call_id=call_id, params=params)
    logger.error(
        "Inbound fallback: Twilio error %s on %s.",
        params.get("ErrorCode", "?"),
        params.get("ErrorUrl", "?"),
    )
    language = _language(campaign)
    company = campaign.partner.name if campaign is not None else settings.APP_NAME
    with translation.override(language.split("-")[0]):
        apology = _(
            "Sorry, %(company)s cannot take your call now because of a technical problem."
        ) % {"company": company}
        offer = _("If you do not want us to call you again, press %(digit)s now.") % {
            "digit": settings.OPT_OUT_DIGIT
        }
        bye = _("Goodbye.")
    return telephony.fallback_twiml(
        lines=[Speech(text=apology, language=language), Speech(text=offer, language=language)],
        action=inbound_url("inbound-opt-out"),
        goodbye=Speech(text=bye, language=language),
    )
