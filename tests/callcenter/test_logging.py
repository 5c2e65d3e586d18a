from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from celery.signals import task_postrun, task_prerun
from django.http import HttpResponse
from django.test import RequestFactory

from callcenter.logging import (
    JsonFormatter,
    MaskPhoneNumbersFilter,
    PlainFormatter,
    RequestContextFilter,
    RequestContextMiddleware,
    bind_task_context,
    call_sid_var,
    mask_phone_numbers,
    request_id_var,
    unbind_task_context,
)

logger = logging.getLogger("tests.callcenter.logging")
CALL_SID = "CA" + "0123456789abcdef" * 2


class Collector(logging.Handler):
    """Keeps the records that reach it, through the filters settings.LOGGING uses."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestContextFilter())
        self.addFilter(MaskPhoneNumbersFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def by(self, name: str) -> list[logging.LogRecord]:
        return [record for record in self.records if record.name == name]


@pytest.fixture
def records() -> Iterator[Collector]:
    collector = Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector
    finally:
        root.removeHandler(collector)


def formatted(formatter: logging.Formatter, emit) -> str:
    """What a console handler with ``formatter`` and the project's filters writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestContextFilter())
    handler.addFilter(MaskPhoneNumbersFilter())
    logger.addHandler(handler)
    try:
        emit()
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def view_that_logs(request) -> HttpResponse:
    logger.info("inside the view")
    return HttpResponse("ok")


# --- Request context ------------------------------------------------------------------------
def test_request_context_middleware_keeps_the_callers_request_id(rf: RequestFactory, records):
    request = rf.get("/api/v1/campaigns/", HTTP_X_REQUEST_ID="edge-7f3a.1")

    response = RequestContextMiddleware(view_that_logs)(request)

    assert response["X-Request-ID"] == "edge-7f3a.1"
    assert [r.request_id for r in records.by(logger.name)] == ["edge-7f3a.1"]
    (line,) = records.by("callcenter.request")
    assert re.fullmatch(r"GET /api/v1/campaigns/ 200 \d+\.\dms", line.getMessage())
    assert line.request_id == "edge-7f3a.1"
    # nothing leaks into whatever runs next on this thread
    assert request_id_var.get() is None


@pytest.mark.parametrize("header", [None, "", "two words", "x" * 129, "id\nFORGED line", "<b>"])
def test_request_context_middleware_generates_an_id_otherwise(rf, records, header) -> None:
    extra = {} if header is None else {"HTTP_X_REQUEST_ID": header}

    response = RequestContextMiddleware(view_that_logs)(rf.get("/", **extra))

    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert [r.request_id for r in records.by(logger.name)] == [request_id]


def test_request_context_middleware_follows_async_views_into_threads(rf, records) -> None:
    def blocking_part() -> None:
        logger.info("in a worker thread")

    async def view(request) -> HttpResponse:
        logger.info("in the event loop")
        await sync_to_async(blocking_part)()
        await sync_to_async(blocking_part, thread_sensitive=False)()
        return HttpResponse("ok")

    middleware = RequestContextMiddleware(view)
    response = async_to_sync(middleware)(rf.get("/", HTTP_X_REQUEST_ID="async-1"))

    assert response["X-Request-ID"] == "async-1"
    assert [r.request_id for r in records.by(logger.name)] == ["async-1"] * 3


def test_request_context_middleware_is_installed_first(client, records, db) -> None:
    response = client.get("/health", HTTP_X_REQUEST_ID="probe-1")

    assert response["X-Request-ID"] == "probe-1"
    # /health is polled every few seconds: its request line is DEBUG, below the level.
    assert records.by("callcenter.request") == []


def test_request_context_middleware_picks_up_twilios_call_sid(client, records) -> None:
    # An unsigned webhook is refused, and the refusal is logged with the call's SID.
    response = client.post("/twilio/calls/7/status", {"CallSid": CALL_SID, "CallStatus": "busy"})

    assert response.status_code == 403
    (refusal,) = records.by("calls.webhooks")
    assert refusal.call_sid == CALL_SID
    assert re.fullmatch(r"[0-9a-f]{32}", refusal.request_id)
    assert records.by("callcenter.request")[0].call_sid == CALL_SID


def test_request_context_middleware_reads_no_body_outside_twilio(rf, records) -> None:
    def view(request) -> HttpResponse:
        assert "_post" not in request.__dict__
        logger.info("no body read")
        return HttpResponse("ok")

    request = rf.post("/api/v1/contacts/", {"CallSid": CALL_SID})

    RequestContextMiddleware(view)(request)

    assert [r.call_sid for r in records.by(logger.name)] == [None]


def test_request_context_middleware_ignores_a_malformed_call_sid(rf, records) -> None:
    request = rf.post("/twilio/calls/7/status", {"CallSid": "CA 1\nFORGED"})

    RequestContextMiddleware(view_that_logs)(request)

    assert [r.call_sid for r in records.by(logger.name)] == [None]


def test_celery_task_prerun_binds_the_task_id(records) -> None:
    try:
        bind_task_context(sender=None, task_id="0b7e-task", task=None, args=(), kwargs={})
        logger.info("working")
    finally:
        unbind_task_context(sender=None, task_id="0b7e-task")
    logger.info("idle")

    assert [r.request_id for r in records.by(logger.name)] == ["0b7e-task", None]


def test_celery_signals_are_connected_to_the_task_context(records) -> None:
    try:
        task_prerun.send(sender=None, task_id="sent-1", task=None, args=(), kwargs={})
        logger.info("working")
    finally:
        task_postrun.send(sender=None, task_id="sent-1", task=None, args=(), kwargs={})

    assert records.by(logger.name)[0].request_id == "sent-1"
    assert request_id_var.get() is None


# --- Formats ------------------------------------------------------------------------------
def test_json_formatter_writes_one_object_per_line_with_the_fields() -> None:
    def emit() -> None:
        tokens = request_id_var.set("req-1"), call_sid_var.set(CALL_SID)
        try:
            try:
                raise RuntimeError("vendor down")
            except RuntimeError:
                logger.exception("turn failed for call %s", 7)
            logger.warning("second line")
        finally:
            call_sid_var.reset(tokens[1])
            request_id_var.reset(tokens[0])
        logger.warning("outside any request")

    first, second, third = formatted(JsonFormatter(), emit).splitlines()

    entry = json.loads(first)
    assert entry.keys() == {
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "call_sid",
        "exception",
    }
    assert (entry["level"], entry["logger"]) == ("ERROR", logger.name)
    assert entry["message"] == "turn failed for call 7"
    assert (entry["request_id"], entry["call_sid"]) == ("req-1", CALL_SID)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: vendor down")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert json.loads(second)["message"] == "second line"
    # the call's SID only when known
    assert json.loads(third) == {**json.loads(third), "request_id": None}
    assert "call_sid" not in json.loads(third)


def test_plain_formatter_adds_the_context_when_known() -> None:
    def emit() -> None:
        token = request_id_var.set("req-2")
        try:
            logger.warning("inside")
        finally:
            request_id_var.reset(token)
        logger.warning("outside")

    inside, outside = formatted(PlainFormatter(), emit).splitlines()

    assert inside.endswith(f"WARNING {logger.name} inside [request_id=req-2]")
    assert outside.endswith(f"WARNING {logger.name} outside")


# --- Phone numbers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+34612345656", "+34*******56"),
        ("calling +14155550123 now", "calling +1********23 now"),
        ("+3531234567", "+353*****67"),
        (
            """{'To': '+447700900123', 'From': "+34910000000"}""",
            """{'To': '+44********23', 'From': "+34*******00"}""",
        ),
        ("To=%2B34612345678&From=%2b34910000000", "To=%2B34*******78&From=%2b34*******00"),
        ("user+34612345678@example.com", "user+34*******78@example.com"),
    ],
)
def test_mask_phone_numbers_keeps_country_code_and_last_two_digits(text, expected) -> None:
    assert mask_phone_numbers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "contact 12345",
        "call 424242 of campaign 7",
        "+1234567 has seven digits",
        "+1234567890123456 has sixteen",
        "at 2025-03-01T10:00:00+01:00",
        "price 1e+100",
    ],
)
def test_mask_phone_numbers_leaves_other_numbers_alone(text) -> None:
    assert mask_phone_numbers(text) == text


def _log_numbers() -> None:
    logger.warning("dialling +34612345678")
    logger.warning("dialling %s from %s", "+34612345679", "+34910000000")
    logger.warning("params %r", {"To": "+34612345670", "attempt": 2})
    try:
        raise ValueError("invalid number +34612345671")
    except ValueError:
        logger.exception("failed")
    logger.warning("contact %s of campaign %d", 12345, 7)


@pytest.mark.parametrize("formatter", [PlainFormatter(), JsonFormatter()], ids=["plain", "json"])
def test_phone_numbers_are_masked_in_message_args_and_traceback(formatter) -> None:
    output = formatted(formatter, _log_numbers)

    for masked in ("+34*******78", "+34*******79", "+34*******00", "+34*******70", "+34*******71"):
        assert masked in output
    assert not re.search(r"\+\d{8}", output), output
    assert "contact 12345 of campaign 7" in output


def test_mask_filter_rewrites_the_record_only_when_it_holds_a_number() -> None:
    mask = MaskPhoneNumbersFilter()
    with_number = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "to %s", ("+34612345678",), None
    )
    without = logging.LogRecord("x", logging.INFO, __file__, 1, "contact %s", (12345,), None)
    broken = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("one",), None)

    assert mask.filter(with_number) and mask.filter(without) and mask.filter(broken)

    assert (with_number.msg, with_number.args) == ("to +34*******78", ())
    assert (without.msg, without.args) == ("contact %s", (12345,))
    # a record that cannot be formatted is left for the handler to report, not raised
    assert (broken.msg, broken.args) == ("%s %s", ("one",))
