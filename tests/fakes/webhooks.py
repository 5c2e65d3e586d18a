"""A partner's webhook receiver on 127.0.0.1, checking signatures as docs/webhooks.md says.

It is written from the documented rule, not with `campaigns.deliveries`: a change of the
signing code that breaks the contract fails here. It answers 200 to a well-signed request,
401 to any other, and plays scripted faults (statuses, slow answers, dropped connections).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qs

from tests.fakes import server
from tests.fakes.server import LocalFakeServer, Response, json_response

TOLERANCE = 300  # seconds, as documented


@dataclass(frozen=True)
class RecordedRequest(server.RecordedRequest):
    body: bytes
    json: Any
    signature_ok: bool


def signature_ok(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """docs/webhooks.md: t and every v1 from the header; HMAC-SHA256 of "<t>.<body>" keyed
    with the secret, in hex; one v1 must match; t within 5 minutes of the clock."""
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    clock = time.time() if now is None else now
    if timestamp is None or abs(clock - timestamp) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return any(hmac.compare_digest(expected.hexdigest(), value) for value in signatures)


class FakeWebhookReceiver(LocalFakeServer[RecordedRequest]):
    """A partner's endpoint; set `secret` to the endpoint's before anything is sent."""

    thread_name = "fake-webhook-receiver"

    def __init__(self, *, secret: str = "") -> None:
        super().__init__()
        self.secret = secret

    # --- Scripting ------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (a str `body` is sent as HTML)."""
        self._queue(times, status=status, body=body or {"error": "scripted"}, headers=headers)

    def drop_next(self, *, times: int = 1) -> None:
        """Close the connection of the next `times` requests without answering."""
        self._queue(times, drop=True)

    # --- Serving (called from handler threads) --------------------------------------------
    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return RecordedRequest(
            method=method,
            path=url.path,
            query=parse_qs(url.query),
            headers=headers,
            body=body,
            json=parsed,
            signature_ok=signature_ok(self.secret, headers.get("callcenter-signature", ""), body),
        )

    def _answer(self, request: RecordedRequest, problems: list[str]) -> Response:
        if not request.signature_ok:
            return json_response(401, {"error": "bad signature"})
        return json_response(200, {"received": True})
