"""Logs that can be followed and shared: request and task context, JSON lines, masked numbers.

``RequestContextMiddleware`` gives every request an id (the caller's ``X-Request-ID`` when it
is a sane token) and, on Twilio's webhooks, the call's ``CallSid``; Celery's ``task_prerun``
binds a task's id the same way. Both live in context variables, so they follow a request
through async views and into the threads ``sync_to_async`` runs. Two logging filters put
them on every record and mask phone numbers; two formatters write plain lines or one JSON
object per line. settings.LOGGING wires them to the console handler.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from contextvars import ContextVar
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponseBase
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from callcenter.middleware import AsyncCapableMiddleware

request_logger = logging.getLogger("callcenter.request")

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from a caller or from Twilio: letters, digits and a few separators, so a
# forged header cannot break a log line or smuggle markup into one.
SANE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
TWILIO_PATH_PREFIX = "/twilio/"
# Probes hit these every few seconds: their request lines are logged at DEBUG only.
QUIET_PATHS = frozenset({"/health", "/metrics"})

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
call_sid_var: ContextVar[str | None] = ContextVar("call_sid", default=None)


# --- Context ------------------------------------------------------------------------------
def sane_token(value: str | None) -> str | None:
    """``value`` when it is a short token of safe characters, else None."""
    if value and SANE_TOKEN.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextMiddleware(AsyncCapableMiddleware):
    """Bind the request id (and a Twilio webhook's CallSid) for the request's logs.

    The id is returned in ``X-Request-ID``. The body is read for the CallSid only on
    Twilio's paths, whose views read it anyway. One line per request is logged on
    ``callcenter.request`` with method, path, status and duration: the access log.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        started, tokens = self._bind(request)
        try:
            response = self.get_response(request)
            return self._finish(request, response, started)
        finally:
            _reset(tokens)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        started, tokens = self._bind(request)
        try:
            response = await self.get_response(request)
            return self._finish(request, response, started)
        finally:
            _reset(tokens)

    def _bind(self, request: HttpRequest) -> tuple[float, tuple]:
        request_id = sane_token(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]  # ours, on Django's request
        call_sid = None
        if request.path.startswith(TWILIO_PATH_PREFIX) and request.method == "POST":
            call_sid = sane_token(request.POST.get("CallSid"))
        return time.perf_counter(), (request_id_var.set(request_id), call_sid_var.set(call_sid))

    def _finish(
        self, request: HttpRequest, response: HttpResponseBase, started: float
    ) -> HttpResponseBase:
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]  # set in _bind
        request_logger.log(
            logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response


def _reset(tokens: tuple) -> None:
    request_token, call_sid_token = tokens
    call_sid_var.reset(call_sid_token)
    request_id_var.reset(request_token)


def bind_task_context(task_id: str | None = None, **kwargs: object) -> None:
    """Celery ``task_prerun`` receiver: the task's id is the request id of its logs."""
    request_id_var.set(task_id)
    call_sid_var.set(None)


def unbind_task_context(**kwargs: object) -> None:
    """Celery ``task_postrun`` receiver: a worker thread's next logs belong to no task."""
    request_id_var.set(None)
    call_sid_var.set(None)


# --- Filters ------------------------------------------------------------------------------
class RequestContextFilter(logging.Filter):
    """Put ``request_id`` and ``call_sid`` (None when unknown) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "call_sid", None) is None:
            record.call_sid = call_sid_var.get()
        return True


# "+" (or its URL encoding) and 8-15 digits, not part of a longer run of digits.
PHONE_NUMBER = re.compile(r"(?<!\d)(\+|%2[Bb])(\d{8,15})(?!\d)")


def _country_code_length(digits: str) -> int:
    # E.164 country codes are prefix-free: the first known prefix is the code.
    for length in (1, 2, 3):
        if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return length
    return 0


def _mask_match(match: re.Match[str]) -> str:
    prefix, digits = match.groups()
    kept = _country_code_length(digits)
    return f"{prefix}{digits[:kept]}{'*' * (len(digits) - kept - 2)}{digits[-2:]}"


def mask_phone_numbers(text: str) -> str:
    """``text`` with each E.164 number cut to its country code and last two digits."""
    return PHONE_NUMBER.sub(_mask_match, text)


class MaskPhoneNumbersFilter(logging.Filter):
    """Mask phone numbers in a record's message, its arguments and its traceback.

    The arguments are masked by formatting the message once: a number inside a dict or a
    repr is found the same way. Records without a number keep their arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        # Logging must never raise into the caller: a record whose arguments do not fit
        # its format is left for the handler to report.
        except Exception:  # noqa: BLE001
            return True
        masked = mask_phone_numbers(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phone_numbers(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phone_numbers(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


# --- Formatters ---------------------------------------------------------------------------
class PlainFormatter(logging.Formatter):
    """One readable line: time, level, logger, message, then the context when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = [
            f"{name}={value}"
            for name in ("request_id", "call_sid")
            if (value := getattr(record, name, None))
        ]
        return f"{line} [{' '.join(context)}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, call_sid
    when known, and the traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if call_sid := getattr(record, "call_sid", None):
            entry["call_sid"] = call_sid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
