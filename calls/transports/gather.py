"""The ``<Gather>`` transport: each turn is a webhook answered with TwiML that says the
lines (``<Play>`` of a clip, else ``<Say>``) inside a ``<Gather>`` listening for speech or
a key, which Twilio posts to the turn webhook; ``<Redirect>`` fetches what comes next.
"""

from __future__ import annotations

from collections.abc import Sequence

from calls import telephony
from calls.links import webhook_url
from calls.models import Call
from voices.clips import Speech


class GatherTransport:
    """TwiML turns through the ``calls.telephony`` builders (see ``calls.transports``)."""

    speaks_text = False

    def listen(self, call: Call, lines: Sequence[Speech]) -> str:
        template = call.campaign.template
        assert template is not None  # a call is only dialled with its campaign's template
        return telephony.gather_twiml(
            lines=lines,
            action=webhook_url("turn", call.pk),
            language=template.language,
            no_input_url=webhook_url("turn", call.pk) + "?silence=1",
        )

    def hang_up(self, lines: Sequence[Speech] = ()) -> str:
        return telephony.hang_up_twiml(lines=lines)

    def hold(self, call: Call, lines: Sequence[Speech]) -> str:
        retry_url = webhook_url("turn", call.pk) + "?retry=1"
        return telephony.hold_twiml(lines=lines, retry_url=retry_url)

    def begin_reply(self, call: Call, first: Speech, *, token: str) -> str:
        template = call.campaign.template
        assert template is not None  # a call is only dialled with its campaign's template
        return telephony.interruptible_twiml(
            lines=[first],
            action=webhook_url("turn", call.pk) + f"?reply={token}",
            language=template.language,
            next_url=continue_url(call.pk, token),
        )

    def keep_waiting(self, call_id: int, *, token: str) -> str:
        return telephony.pause_twiml(seconds=1, next_url=continue_url(call_id, token))

    def transfer(
        self, call: Call, lines: Sequence[Speech], *, number: str, caller_id: str, timeout: int
    ) -> str:
        return telephony.transfer_twiml(
            lines=lines,
            number=number,
            caller_id=caller_id,
            timeout=timeout,
            action=webhook_url("transfer-ended", call.pk),
        )

    def apologise(self, call_id: int, lines: Sequence[Speech], *, goodbye: Speech) -> str:
        return telephony.fallback_twiml(
            lines=lines,
            action=webhook_url("fallback-opt-out", call_id),
            goodbye=goodbye,
        )


def continue_url(call_id: int, token: str) -> str:
    """The continuation webhook of reply ``token``: the rest of the reply."""
    return webhook_url("continue", call_id) + f"?reply={token}"


GATHER = GatherTransport()
