"""Sending a delivery: one attempt claimed by a compare-and-set, its result logged, and
the retries with backoff until the retry window closes."""

from __future__ import annotations

import datetime
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter.backoff import retry_after_seconds
from callcenter.metrics import WEBHOOK_DELIVERIES_FAILED, WEBHOOK_DELIVERY_ATTEMPTS
from callcenter.text import truncate
from campaigns.deliveries.endpoints import _refusal
from campaigns.deliveries.signatures import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
)
from campaigns.egress import (
    DestinationRefused,
    DestinationUnresolved,
    open_stream,
    resolve_destination,
)
from campaigns.models import (
    WebhookDelivery,
    WebhookEndpoint,
)
from campaigns.tasks import deliver_webhook_task

logger = logging.getLogger(__name__)


# Failed attempts are retried until this long after the event, then the delivery fails.
RETRY_WINDOW = datetime.timedelta(hours=24)
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
# Each wait is shortened by up to this fraction, so that retries of many deliveries that
# failed together (an endpoint down) do not come back all at once.
RETRY_JITTER = 0.2
# A claimed attempt whose result was never written (its worker died) is tried again after
# this: longer than deliver_webhook_task's hard time limit, so that it is never sent twice.
CLAIM_LEASE = datetime.timedelta(minutes=5)
# How much of an endpoint's answer is kept in the attempts log.
RESPONSE_BODY_LIMIT = 500


# --- Delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one POST to an endpoint came to."""

    result: str  # delivered, http_error, timeout, connection_error or refused (not sent)
    status_code: int | None
    error: str
    duration_ms: int
    response_body: str
    retry_after: float | None = None


def deliver(*, delivery_id: int, now: datetime.datetime | None = None) -> str:
    """Make one attempt at a pending delivery that is due, and record it. Returns
    delivered, retry (failed; the next attempt is scheduled), failed (given up) or skipped
    (not pending, not due yet, or claimed by another worker).

    A 2xx answer delivers. Anything else is retried after ``retry_delay`` until 24 hours
    after the event; a 410 Gone disables the endpoint and fails at once, and so does an
    endpoint disabled or whose URL is not http(s), and an attempt refused because the URL's
    host resolves to an internal address (nothing is sent; see ``campaigns.egress``).
    ``now`` is the clock that schedules; the signature carries the real time.
    """
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return "skipped"
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        return "skipped"
    endpoint = delivery.endpoint
    if refusal := _refusal(endpoint):
        return _refuse(delivery, error=refusal, now=now)

    attempt = delivery.attempts + 1
    log = list(delivery.attempt_log)
    if len(log) < delivery.attempts:
        # The previous claim's lease ran out with no result: its worker died mid-attempt.
        log.append(
            _log_entry(
                attempt=delivery.attempts,
                at=now,
                status_code=None,
                error=_("No result was recorded: the attempt was interrupted."),
                duration_ms=0,
                response_body="",
            )
        )
    claimed = (
        WebhookDelivery.objects.due(now)
        .filter(pk=delivery.pk, attempts=delivery.attempts)
        .update(
            attempts=attempt, attempt_log=log, next_attempt_at=now + CLAIM_LEASE, updated_at=now
        )
    )
    if claimed != 1:
        return "skipped"

    sent = _post(delivery=delivery, endpoint=endpoint)
    log.append(
        _log_entry(
            attempt=attempt,
            at=now,
            status_code=sent.status_code,
            error=sent.error,
            duration_ms=sent.duration_ms,
            response_body=sent.response_body,
        )
    )
    finished = now + datetime.timedelta(milliseconds=sent.duration_ms)
    changes: dict[str, Any] = {
        "attempt_log": log,
        "last_status_code": sent.status_code,
        "last_error": truncate(sent.error),
        "updated_at": finished,
    }
    failure: _Failure | None = None
    if sent.result == "delivered":
        outcome = "delivered"
        changes.update(
            state=WebhookDelivery.State.DELIVERED, delivered_at=finished, next_attempt_at=None
        )
    else:
        next_attempt_at = finished + retry_delay(attempt=attempt, retry_after=sent.retry_after)
        if sent.result == "refused":
            failure = _Failure("refused", "")
        elif sent.status_code == 410:
            failure = _Failure("gone", _("The endpoint answered 410 Gone, so it was disabled."))
        elif next_attempt_at > delivery.created_at + RETRY_WINDOW:
            failure = _Failure(
                "expired",
                _("Given up after %(attempts)d attempts over 24 hours.") % {"attempts": attempt},
            )
        if failure is None:
            outcome = "retry"
            changes["next_attempt_at"] = next_attempt_at
        else:
            outcome = "failed"
            changes.update(state=WebhookDelivery.State.FAILED, next_attempt_at=None)
            changes["last_error"] = truncate(f"{sent.error} {failure.message}".strip())
    written = WebhookDelivery.objects.filter(
        pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=attempt
    ).update(**changes)
    WEBHOOK_DELIVERY_ATTEMPTS.labels(result=sent.result).inc()
    if written != 1:
        # Only when this attempt outlived its lease and another worker claimed the next.
        logger.warning("Webhook delivery %s: attempt %s superseded.", delivery.pk, attempt)
        return "skipped"
    if failure is not None:
        WEBHOOK_DELIVERIES_FAILED.labels(reason=failure.reason).inc()
        if failure.reason == "gone":
            WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
                is_active=False, updated_at=finished
            )
        logger.warning(
            "Webhook delivery %s to endpoint %s failed after %s attempts (%s).",
            delivery.pk,
            endpoint.pk,
            attempt,
            failure.reason,
        )
    return outcome


def retry_delay(*, attempt: int, retry_after: float | None = None) -> datetime.timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): 30 s doubling with each
    attempt, capped at an hour, shortened by up to 20 % of jitter. A longer Retry-After
    from the endpoint is honoured, up to the hour."""
    step = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(attempt - 1, 20))
    seconds = step * (1 - RETRY_JITTER * random.random())  # noqa: S311 - not cryptographic
    if retry_after is not None:
        seconds = min(MAX_RETRY_SECONDS, max(seconds, retry_after))
    return datetime.timedelta(seconds=seconds)


def redeliver(
    *, delivery: WebhookDelivery, now: datetime.datetime | None = None
) -> WebhookDelivery:
    """Send ``delivery`` again, whatever its state: it becomes pending with an attempt due
    now (its log is kept) and is queued after commit. An attempt being sent right now is
    left to finish instead. Should the new attempt fail, retries go on only within 24 hours
    of the event."""
    now = now or timezone.now()
    current = WebhookDelivery.objects.get(pk=delivery.pk)
    in_flight = (
        current.state == WebhookDelivery.State.PENDING
        and current.attempts > len(current.attempt_log)
        and current.next_attempt_at is not None
        and current.next_attempt_at > now
    )
    if not in_flight:
        moved = WebhookDelivery.objects.filter(
            pk=current.pk, state=current.state, attempts=current.attempts
        ).update(
            state=WebhookDelivery.State.PENDING,
            next_attempt_at=now,
            delivered_at=None,
            updated_at=now,
        )
        if moved:
            # celery-types predates delay_on_commit (Celery 5.4).
            deliver_webhook_task.delay_on_commit(current.pk)  # type: ignore[attr-defined]
    delivery.refresh_from_db()
    return delivery


def queue_due_deliveries(*, now: datetime.datetime | None = None, limit: int = 1000) -> int:
    """Queue an attempt for every pending delivery that is due: retries whose time has come,
    and deliveries whose task or worker was lost. Returns how many were queued."""
    now = now or timezone.now()
    due = (
        WebhookDelivery.objects.due(now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    ids = list(due)
    for delivery_id in ids:
        # celery-types predates delay_on_commit (Celery 5.4).
        deliver_webhook_task.delay_on_commit(delivery_id)  # type: ignore[attr-defined]
    return len(ids)


# --- Internals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    reason: str  # expired, gone or refused: the label of WEBHOOK_DELIVERIES_FAILED
    message: str


def _refuse(delivery: WebhookDelivery, *, error: str, now: datetime.datetime) -> str:
    refused = WebhookDelivery.objects.filter(
        pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=delivery.attempts
    ).update(
        state=WebhookDelivery.State.FAILED, next_attempt_at=None, last_error=error, updated_at=now
    )
    if refused != 1:
        return "skipped"
    WEBHOOK_DELIVERIES_FAILED.labels(reason="refused").inc()
    logger.info("Webhook delivery %s refused: %s", delivery.pk, error)
    return "failed"


def _post(*, delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> Attempt:
    """POST the delivery's envelope, signed; never raises for what the endpoint does."""
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"{settings.APP_NAME}-Webhooks/1.0",
        SIGNATURE_HEADER: sign(secret=endpoint.secret, timestamp=int(time.time()), body=body),
        EVENT_HEADER: str(delivery.event_id),
        EVENT_TYPE_HEADER: delivery.event_type,
        DELIVERY_HEADER: str(delivery.pk),
    }
    timeout = settings.WEBHOOK_TIMEOUT
    started = time.monotonic()
    try:
        # Looked up once, every address checked, and only those connected to.
        destination = resolve_destination(endpoint.url)
    except DestinationRefused as refused:
        return Attempt("refused", None, refused.message, _elapsed_ms(started), "")
    except DestinationUnresolved as unresolved:
        return Attempt("connection_error", None, unresolved.message, _elapsed_ms(started), "")
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            open_stream(
                client, destination, method="POST", content=body, headers=headers
            ) as response,
        ):
            status = response.status_code
            retry_after = retry_after_seconds(response.headers)
            answer = _read_start(response)
    except httpx.TimeoutException:
        return Attempt(
            result="timeout",
            status_code=None,
            error=_("No answer within %(seconds)s seconds.") % {"seconds": f"{timeout:g}"},
            duration_ms=_elapsed_ms(started),
            response_body="",
        )
    except (httpx.RequestError, httpx.InvalidURL) as error:
        return Attempt(
            result="connection_error",
            status_code=None,
            error=_("The endpoint could not be reached: %(error)s")
            % {"error": str(error) or type(error).__name__},
            duration_ms=_elapsed_ms(started),
            response_body="",
        )
    if 200 <= status < 300:
        return Attempt("delivered", status, "", _elapsed_ms(started), answer)
    return Attempt(
        result="http_error",
        status_code=status,
        error=_("The endpoint answered %(status)d.") % {"status": status},
        duration_ms=_elapsed_ms(started),
        response_body=answer,
        retry_after=retry_after,
    )


def _read_start(response: httpx.Response) -> str:
    """The start of the answer's body, as text; a body that breaks off is kept as read."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= RESPONSE_BODY_LIMIT * 4:  # enough bytes for the characters kept
                break
    except httpx.RequestError:
        pass
    return b"".join(chunks).decode("utf-8", errors="replace")[:RESPONSE_BODY_LIMIT]


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _log_entry(
    *,
    attempt: int,
    at: datetime.datetime,
    status_code: int | None,
    error: str,
    duration_ms: int,
    response_body: str,
) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": at.isoformat(),
        "status_code": status_code,
        "error": error,
        "duration_ms": duration_ms,
        "response_body": response_body,
    }
