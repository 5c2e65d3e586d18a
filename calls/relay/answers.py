"""The webhooks' side of a relay call: the answer that connects it to our socket through
``<Connect><ConversationRelay>``, and the ``<Connect>`` action Twilio requests when the
session ends (``relay_ended``): a transfer, a hang-up, or, when the session failed, an
apology and a hang-up.

Scripted templates and voicemail messages keep ``<Gather>`` and their recorded clips: only
an AI conversation on a campaign of the relay transport streams.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from callcenter.queries import one_or_none
from calls import telephony
from calls.dialogue import Dialogue, add_turn, goodbye, load_call, save_dialogue, template_of
from calls.links import relay_url, webhook_url
from calls.models import Call, Turn
from calls.transports.relay import Handoff
from campaigns import limits
from campaigns.models import ConversationTransport
from templates.languages import split_languages
from templates.models import CallTemplate
from voices.clips import Speech
from voices.services import default_voice_id

logger = logging.getLogger(__name__)


def streams(call: Call) -> bool:
    """Whether ``call``'s conversation goes over ConversationRelay: an AI template on a
    campaign of the relay transport."""
    template = template_of(call)
    return (
        call.campaign.transport == ConversationTransport.RELAY
        and template.mode == CallTemplate.Mode.AI
    )


def answer(call: Call, dialogue: Dialogue, *, greeting: str) -> str:
    """Connect the answered call to its socket, Twilio saying ``greeting`` as the session
    opens. A repeated answer request connects again without a second greeting."""
    with transaction.atomic():
        one_or_none(Call.objects.select_for_update().filter(pk=call.pk))
        repeated = call.turns.exists()
        if repeated:
            logger.info("Call %s: answer requested again; connecting, no second greeting.", call.pk)
        else:
            add_turn(call, role=Turn.Role.AGENT, text=greeting)
            # When the callee answered, for the time to first audio (calls.relay.records).
            dialogue = dialogue.but(
                other={**dialogue.other, "answer_received_at": timezone.now().isoformat()}
            )
            save_dialogue(call, dialogue)
            Call.objects.filter(pk=call.pk).update(transport=ConversationTransport.RELAY)
            call.transport = ConversationTransport.RELAY
    template = template_of(call)
    voice = call.voice.provider_voice_id if call.voice is not None else default_voice_id()
    return telephony.relay_twiml(
        url=relay_url(call.pk),
        action=webhook_url("relay-ended", call.pk),
        language=template.language,
        voice=voice,
        tts_provider=settings.RELAY_TTS_PROVIDER,
        welcome_greeting="" if repeated else greeting,
        hints=template.hints,
        other_languages=[
            tag for tag in split_languages(template.extra_languages) if tag != template.language
        ],
        # The contact's id only: what Twilio passes on is never personal data.
        parameters={"contact": str(call.contact_id)},
        reconnect=settings.RELAY_APPLICATION_RECONNECT,
    )


def keep_first_audio(call: Call, *, since: datetime.datetime) -> None:
    """Keep the time from ``since`` (the answer reaching us) to now as the call's time to
    first audio, unless known already."""
    waited = max(round((timezone.now() - since).total_seconds() * 1000), 0)
    Call.objects.filter(pk=call.pk, first_audio_ms__isnull=True).update(first_audio_ms=waited)


def relay_ended(*, call_id: int, params: Mapping[str, str]) -> str:
    """Twilio's ``<Connect>`` action: the relay session is over. Our ``end`` message says
    why in its hand-off data: a transfer is dialled (to the campaign's own number, never
    one from the wire), a hang-up hangs up. A session that ended otherwise (the socket
    failed: SessionStatus ``failed``, with Twilio's ErrorCode; or a turn of ours failed:
    ``Handoff.FAILED``) apologises and hangs up, kept in the call's flags."""
    call = load_call(call_id, params)
    if call is None:
        return goodbye()
    reason = _handoff_reason(params.get("HandoffData", ""))
    if reason == Handoff.TRANSFER:
        number = limits.allowed_transfer_number(call.campaign)
        if number:
            return telephony.transfer_twiml(
                lines=[],
                number=number,
                caller_id=call.our_number,
                timeout=call.campaign.ring_timeout_seconds,
                action=webhook_url("transfer-ended", call.pk),
            )
        logger.warning("Call %s: transfer handed off, but no transfer number is allowed.", call.pk)
    if reason in (Handoff.HANG_UP, Handoff.TRANSFER):
        return goodbye()
    if (
        reason != Handoff.FAILED
        and not params.get("ErrorCode")
        and (params.get("CallStatus") == "completed" or params.get("SessionStatus") == "completed")
    ):
        # The callee hung up (the call is over, no error): nothing failed, and nobody hears
        # what is answered. Twilio does not document the statuses of a session that ends
        # so, hence either of them read as that.
        return goodbye()
    # A turn of ours failed (Handoff.FAILED), or the session did (no hand-off of ours).
    status = "turn failed" if reason == Handoff.FAILED else params.get("SessionStatus", "")
    logger.warning(
        "Call %s: relay session ended without our hand-off (status %s, Twilio error %s: %s).",
        call.pk,
        status or "?",
        params.get("ErrorCode", "?"),
        params.get("ErrorMessage", ""),
    )
    with transaction.atomic():
        locked = Call.objects.select_for_update().filter(pk=call.pk).values("flags", "dialogue")
        row = one_or_none(locked)
        if row is not None:
            flags = {**row["flags"], "relay_failed": params.get("ErrorCode") or status or True}
            dialogue = Dialogue.from_json(row["dialogue"])
            Call.objects.filter(pk=call.pk).update(flags=flags)
            save_dialogue(call, dialogue.but(ended=True, closed=dialogue.closed or "relay failed"))
    template = template_of(call)
    language = template.language
    with translation.override(language.split("-")[0]):
        apology = _(
            "Sorry, we are having a technical problem. This call was from %(company)s; "
            "we will call you another time."
        ) % {"company": call.campaign.partner.name}
    return goodbye(call, lines=[Speech(text=apology, language=language)])


def _handoff_reason(data: str) -> str:
    """The reason in our ``end`` message's hand-off data ("" for none or another's)."""
    try:
        handoff = json.loads(data) if data else {}
    except ValueError:
        return ""
    reason = handoff.get("reason") if isinstance(handoff, dict) else None
    return reason if isinstance(reason, str) and reason in set(Handoff) else ""
