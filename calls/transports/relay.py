"""The ConversationRelay transport: Twilio recognises the caller's speech and speaks our
text; the conversation goes over a WebSocket (``calls.relay``).

Each method answers a plan for the socket (``Plan``, as JSON text like every transport's
answer): the lines to send as ``text`` messages, and what follows them: listen for the
caller's next words, try the model again, or end the session (``end``, with hand-off data
that the ``<Connect>`` action webhook reads: a transfer or a hang-up). The lines are
sent as text: Twilio voices them (twilio.com/docs/voice/conversationrelay/websocket-messages).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

from calls.models import Call
from voices.clips import Speech


class Then(enum.StrEnum):
    """What the socket does once the plan's lines are sent."""

    LISTEN = "listen"  # the caller's next words are the next turn
    RETRY = "retry"  # the model's second try at the same turn
    END = "end"  # the session ends once the lines are heard (``handoff`` says how)


class Handoff(enum.StrEnum):
    """Why a session was ended by us: what the ``<Connect>`` action answers."""

    HANG_UP = "end"
    TRANSFER = "transfer"
    # A turn failed on our side (the database, say): the action apologises and hangs up,
    # as Twilio's fallback does for a <Gather> webhook that failed.
    FAILED = "failed"


@dataclass(frozen=True)
class Plan:
    """What the relay session sends and does next (see the module's docstring).
    ``interruptible``: whether the caller may speak over the lines (not over a goodbye,
    a transfer's announcement or an opt-out's confirmation: what follows them is
    decided)."""

    lines: tuple[str, ...] = ()
    then: Then = Then.LISTEN
    handoff: Handoff | None = None
    interruptible: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {
                "relay": 1,
                "lines": list(self.lines),
                "then": self.then.value,
                "handoff": self.handoff.value if self.handoff else None,
                "interruptible": self.interruptible,
            }
        )

    @classmethod
    def from_answer(cls, answer: str) -> Plan:
        """The plan in a flow's answer; an answer that is not one (TwiML: the flow found
        no call to speak on) ends the session."""
        try:
            data = json.loads(answer)
        except ValueError:
            return cls(then=Then.END, handoff=Handoff.HANG_UP, interruptible=False)
        if not isinstance(data, dict) or data.get("relay") != 1:
            return cls(then=Then.END, handoff=Handoff.HANG_UP, interruptible=False)
        handoff = data.get("handoff")
        return cls(
            lines=tuple(str(text) for text in data.get("lines") or ()),
            then=Then(data.get("then", Then.LISTEN)),
            handoff=Handoff(handoff) if handoff else None,
            interruptible=bool(data.get("interruptible", True)),
        )


def _texts(lines: Sequence[Speech]) -> tuple[str, ...]:
    return tuple(line.text for line in lines if line.text)


class RelayTransport:
    """Plans for a relay call's socket (see ``calls.transports``)."""

    name = "relay"
    speaks_text = True

    def listen(self, call: Call, lines: Sequence[Speech]) -> str:
        return Plan(lines=_texts(lines)).to_json()

    def hang_up(self, lines: Sequence[Speech] = ()) -> str:
        return Plan(
            lines=_texts(lines),
            then=Then.END,
            handoff=Handoff.HANG_UP,
            interruptible=False,
        ).to_json()

    def hold(self, call: Call, lines: Sequence[Speech]) -> str:
        return Plan(lines=_texts(lines), then=Then.RETRY, interruptible=False).to_json()

    def begin_reply(self, call: Call, first: Speech, *, token: str) -> str:
        # A relay reply streams its text as it is written (calls.relay.session): a reply
        # begun by the <Gather> path's streaming is only its first line, then listening.
        return self.listen(call, [first])

    def keep_waiting(self, call_id: int, *, token: str) -> str:
        return Plan().to_json()

    def transfer(
        self, call: Call, lines: Sequence[Speech], *, number: str, caller_id: str, timeout: int
    ) -> str:
        # The number is not sent: the <Connect> action dials the campaign's own transfer
        # number (calls.flow.relay_ended), so nothing on the wire can redirect the call.
        return Plan(
            lines=_texts(lines),
            then=Then.END,
            handoff=Handoff.TRANSFER,
            interruptible=False,
        ).to_json()

    def apologise(self, call_id: int, lines: Sequence[Speech], *, goodbye: Speech) -> str:
        return self.hang_up([*lines, goodbye])


RELAY = RelayTransport()
