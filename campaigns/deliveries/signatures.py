"""How a delivery is signed (the headers partners read) and how a receiver checks it."""

from __future__ import annotations

import datetime
import hashlib
import hmac

from django.utils import timezone

SIGNATURE_HEADER = "Callcenter-Signature"
EVENT_HEADER = "Callcenter-Event"
EVENT_TYPE_HEADER = "Callcenter-Event-Type"
DELIVERY_HEADER = "Callcenter-Delivery"
# Receivers should refuse a signature whose timestamp is further than this from their clock.
SIGNATURE_TOLERANCE = 300


# --- Signatures -----------------------------------------------------------------------------


def sign(*, secret: str, timestamp: int, body: bytes | str) -> str:
    """The ``Callcenter-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256, keyed with the secret, of "<timestamp>.<body>">``."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    *,
    secret: str,
    header: str,
    body: bytes | str,
    tolerance: int = SIGNATURE_TOLERANCE,
    now: datetime.datetime | None = None,
) -> bool:
    """Whether ``header`` carries a v1 signature of ``body`` by ``secret`` whose timestamp is
    within ``tolerance`` seconds of ``now``. Any one of several v1 values may match."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    clock = (now or timezone.now()).timestamp()
    if abs(clock - timestamp) > tolerance:
        return False
    expected = sign(secret=secret, timestamp=timestamp, body=body).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
