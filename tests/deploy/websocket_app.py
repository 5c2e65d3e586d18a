"""A WebSocket echo for tests/deploy/: deploy/gunicorn.conf.py's server serves it in place
of the project's application, so what is checked is the server's (and a proxy's) WebSocket
handling alone. The text "headers" is answered with the handshake's forwarding headers as
JSON. On a disconnect it waits a second, as a consumer recording how its call ended would,
then writes the close code to the file WEBSOCKET_APP_RECORD names."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Message = MutableMapping[str, Any]


async def application(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            text = message.get("text") or ""
            if text == "headers":
                headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                names = ("host", "x-forwarded-proto", "x-forwarded-for")
                text = json.dumps({name: headers.get(name) for name in names})
            await send({"type": "websocket.send", "text": text})
        elif message["type"] == "websocket.disconnect":
            await asyncio.sleep(1)
            Path(os.environ["WEBSOCKET_APP_RECORD"]).write_text(str(message.get("code")))
            return
