"""The time a webhook has to answer Twilio.

Twilio waits 15 s for TwiML, then requests the fallback URL and the call is lost to an
apology. Every webhook answering TwiML therefore has a deadline, WEBHOOK_DEADLINE_SECONDS
after the request arrived, that covers the model and the speech: rendering a line stops at
it (the line is spoken with <Say> instead), and a reply still being made is answered with
what is ready. The deadline travels in a context variable, so the threads and tasks that
work for the request see it without being handed it.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from django.conf import settings

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "webhook_deadline", default=None
)


@contextlib.contextmanager
def answering(*, seconds: float | None = None) -> Iterator[float]:
    """Within this block the webhook must answer by the deadline it yields, a
    ``time.monotonic()`` instant ``seconds`` (WEBHOOK_DEADLINE_SECONDS) from now."""
    deadline = time.monotonic() + (
        settings.WEBHOOK_DEADLINE_SECONDS if seconds is None else seconds
    )
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def current() -> float | None:
    """The deadline of the webhook being answered, None outside one."""
    return _DEADLINE.get()


def left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative), None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
