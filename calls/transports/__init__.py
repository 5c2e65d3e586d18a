"""How a call's conversation reaches the caller: the transport seam.

The flow (``calls.flow``) decides what is said and what happens next; a transport turns
that into what the carrier is answered with. Every method returns that answer as text:
for ``<Gather>`` (``gather.py``, today's transport) a TwiML document answering the
webhook; a transport that streams text over a WebSocket (Twilio's ConversationRelay)
returns the message it sends on the socket instead, and the caller's words come back to
``flow.turn`` from the socket rather than from a webhook.

A transport never reads or writes the database and never decides: it is given the call,
the lines to say (already voiced, ``voices.clips.Speech``), and where the conversation
goes on.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Protocol

from calls.models import Call
from voices.clips import Speech


class Transport(Protocol):
    """What a conversation transport does for the flow."""

    # Whether the carrier speaks our text itself (ConversationRelay): lines are then not
    # voiced into clips, and the model is told its words are heard as they are written.
    speaks_text: bool

    def listen(self, call: Call, lines: Sequence[Speech]) -> str:
        """Say ``lines``, then wait for the caller's words (or silence) and hand them to
        the flow's next turn."""
        ...

    def hang_up(self, lines: Sequence[Speech] = ()) -> str:
        """Say ``lines``, then end the call."""
        ...

    def hold(self, call: Call, lines: Sequence[Speech]) -> str:
        """Say ``lines`` (a holding line), then give the flow the same turn again, with
        nothing new said (``retry``): the model gets one more try."""
        ...

    def begin_reply(self, call: Call, first: Speech, *, token: str) -> str:
        """Say ``first``, the first line of reply ``token`` while the rest is made; the
        caller may speak over it (the flow's next turn is told ``token``), else the rest
        of the reply follows (``continue_reply``)."""
        ...

    def keep_waiting(self, call_id: int, *, token: str) -> str:
        """The rest of reply ``token`` is not ready yet: keep the line open a moment and
        ask for it again."""
        ...

    def transfer(
        self, call: Call, lines: Sequence[Speech], *, number: str, caller_id: str, timeout: int
    ) -> str:
        """Say ``lines``, then connect the caller to ``number`` (ringing ``timeout``
        seconds, showing ``caller_id``); the flow hears how it ended (``transfer_ended``)."""
        ...

    def apologise(self, call_id: int, lines: Sequence[Speech], *, goodbye: Speech) -> str:
        """The carrier could not use our answer: say ``lines`` while listening for the
        opt-out key (sent to the flow's ``fallback_opt_out``), then ``goodbye``, and hang
        up."""
        ...


# Set while a ConversationRelay socket's message is handled (``on_relay_socket``): the
# call's words arrive there, and what the flow answers goes back on it. Webhooks of the
# same call (its voicemail, its fallback, the end of its relay session) still answer TwiML.
_ON_RELAY_SOCKET: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "on_relay_socket", default=False
)


@contextlib.contextmanager
def on_relay_socket() -> Iterator[None]:
    """Within: the flow's answers are for a relay call's socket (``calls.relay``)."""
    token = _ON_RELAY_SOCKET.set(True)
    try:
        yield
    finally:
        _ON_RELAY_SOCKET.reset(token)


def transport_for(call: Call | None = None) -> Transport:
    """The transport of ``call`` (of any call, when not given): ConversationRelay for a
    relay call's words arriving on its socket, else ``<Gather>`` (webhooks answer TwiML)."""
    # Both build on this module.
    from calls.transports.gather import GATHER
    from calls.transports.relay import RELAY

    if _ON_RELAY_SOCKET.get() and call is not None and call.transport == RELAY.name:
        return RELAY
    return GATHER
