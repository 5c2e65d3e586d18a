"""The WebSocket Twilio's ConversationRelay opens for a relay call
(twilio.com/docs/voice/conversationrelay/websocket-messages), served by Django Channels.

The handshake must carry Twilio's signature (``X-Twilio-Signature``) over the URL we gave
Twilio, computed as for a webhook with no parameters (twilio.com/en-us/changelog/
new-features-now-available-for-conversationrelay); anything else is refused before a
message is read. The first message must be ``setup`` for the live relay call the URL
names; then the conversation is the session's (``calls.relay.session``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from channels.generic.websocket import AsyncWebsocketConsumer

from callcenter.metrics import RELAY_ERRORS, RELAY_SESSIONS
from calls import links, telephony
from calls.relay import protocol, records
from calls.relay.session import RelaySession, on_socket

logger = logging.getLogger(__name__)

# Close codes of ours (4000-4999 are the application's, RFC 6455 section 7.4.2).
NOT_A_RELAY_CALL = 4404
NOT_SET_UP = 4400
# Twilio closing the socket normally (RFC 6455: 1000 normal, 1001 going away): the call
# or its session ended. Anything else while the call is ours is a drop.
NORMAL_CLOSES = frozenset({1000, 1001})


class RelayConsumer(AsyncWebsocketConsumer):
    """One relay call's socket (``/relay/<call_id>/``)."""

    session: RelaySession | None = None
    counted = False

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.call_id = int(self.scope["url_route"]["kwargs"]["call_id"])
        if not self._signed():
            RELAY_ERRORS.labels(kind="refused").inc()
            logger.warning(
                "Refused the relay socket of call %s: missing or invalid Twilio signature.",
                self.call_id,
            )
            await self.close()  # before accepting: the handshake is answered 403
            return
        await self.accept()
        RELAY_SESSIONS.inc()
        self.counted = True

    def _signed(self) -> bool:
        headers = dict(self.scope.get("headers") or ())
        signature = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        query = self.scope.get("query_string", b"").decode("latin-1")
        url = links.relay_url(self.call_id) + (f"?{query}" if query else "")
        # Twilio does not document whether it signs the wss:// URL it was given or its
        # https:// twin: either is accepted, for exactly our URL.
        scheme, *rest = urlsplit(url)
        twin = urlunsplit(("https" if scheme == "wss" else "http", *rest))
        return any(
            telephony.signature_is_valid(url=candidate, params={}, signature=signature)
            for candidate in (url, twin)
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = protocol.read(text_data if text_data is not None else bytes_data)
        except protocol.Unreadable as problem:
            RELAY_ERRORS.labels(kind="unreadable").inc()
            logger.warning("Call %s: unreadable relay frame: %s", self.call_id, problem)
            return
        if self.session is None:
            await self._set_up(message)
            return
        await self.session.handle(message)

    async def _set_up(self, message: protocol.Message) -> None:
        if not isinstance(message, protocol.Setup):
            RELAY_ERRORS.labels(kind="refused").inc()
            logger.warning("Call %s: relay socket spoke before its setup.", self.call_id)
            await self.close(code=NOT_SET_UP)
            return
        greeting = await on_socket(records.opened)(
            self.call_id, call_sid=message.call_sid, contact=message.custom.get("contact", "")
        )
        if greeting is None:
            RELAY_ERRORS.labels(kind="refused").inc()
            logger.warning(
                "Call %s: relay setup for SID %s refused: not a live relay call.",
                self.call_id,
                message.call_sid,
            )
            await self.close(code=NOT_A_RELAY_CALL)
            return
        self.session = RelaySession(
            self.call_id, lambda frame: self.send(text_data=frame), call_sid=message.call_sid
        )
        self.session.arm_silence_timer(after=greeting)

    async def disconnect(self, code: int) -> None:
        if self.counted:
            RELAY_SESSIONS.dec()
            self.counted = False
        if self.session is not None:
            await self.session.close(dropped=code not in NORMAL_CLOSES)
