"""The product's Prometheus metrics, defined in one place, and the /metrics view.

Each metric is counted where its event happens; counts that follow a database write are
taken when the transaction commits, so a rolled-back write (and its retry) counts once.
Under gunicorn, prometheus_client runs in multiprocess mode (deploy/gunicorn.conf.py):
every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and /metrics adds them up.
Gauges of the database's current state are not kept by any process: a ``ScrapeGauge``
reads them at scrape time, in whichever worker answers.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterator, Mapping

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# --- Calls ----------------------------------------------------------------------------------

CALL_STATUS_CHANGES = Counter(
    "callcenter_call_status_changes_total",
    "Calls moved to a status by a Twilio status callback, by the status reached.",
    ["status"],
)
CALLS_FINISHED = Counter(
    "callcenter_calls_finished_total",
    "Ended calls by what they mean for the contact: answered, busy, no-answer, failed, "
    "voicemail, canceled, rejected, transfer-failed; inbound for calls a contact made to us.",
    ["outcome"],
)
CONTACT_STATES = Counter(
    "callcenter_contacts_state_total",
    "Contacts moved on from calling when their call ended, by the state they were given.",
    ["state"],
)
DIAL_ERRORS = Counter(
    "callcenter_dial_errors_total",
    "Call creations Twilio refused (by its error code, http_<status> without one, "
    "not_configured) or that failed after the retries (unavailable).",
    ["code"],
)
CALLS_PLACED = Counter(
    "callcenter_calls_placed_total",
    "Dial attempts of pending calls by how they ended: placed (Twilio accepted), "
    "rejected, released (no longer dialable), held (campaign or account problem), retry, "
    "uncertain (Twilio may have created it), not_pending.",
    ["result"],
)
OPT_OUTS = Counter(
    "callcenter_opt_outs_total",
    "Numbers put on a partner's do-not-call list because the callee asked during a call.",
)
DISPATCH_CALLS_CREATED = Counter(
    "callcenter_dispatch_calls_created_total", "Pending calls created by the dispatcher."
)
DISPATCH_LAG = Histogram(
    "callcenter_dispatch_lag_seconds",
    "How long a contact waited between becoming due and the dispatcher creating its call.",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# --- Webhooks -------------------------------------------------------------------------------

SIGNATURE_FAILURES = Counter(
    "callcenter_webhook_signature_failures_total",
    "Webhook requests refused for a missing or invalid X-Twilio-Signature, by view.",
    ["view"],
)
WEBHOOK_SECONDS = Histogram(
    "callcenter_webhook_seconds",
    "Time to handle a Twilio webhook, signature check included, by view.",
    ["view"],
    # Twilio waits 15 s at most and its status callbacks should be answered at once.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# --- Partner webhooks -----------------------------------------------------------------------

WEBHOOK_DELIVERY_ATTEMPTS = Counter(
    "callcenter_webhook_delivery_attempts_total",
    "Attempts to deliver an event to a partner's endpoint, by result: delivered (a 2xx), "
    "http_error (any other status), timeout, connection_error, refused (an internal address: "
    "nothing sent).",
    ["result"],
)
WEBHOOK_DELIVERIES_FAILED = Counter(
    "callcenter_webhook_deliveries_failed_total",
    "Deliveries given up on, by reason: expired (still failing 24 hours after the event), "
    "gone (the endpoint answered 410 and was disabled), refused (endpoint disabled, its "
    "URL not http(s), or its host an internal address).",
    ["reason"],
)

# --- Speech ---------------------------------------------------------------------------------

SPEECH_FALLBACKS = Counter(
    "callcenter_speech_fallbacks_total",
    "Lines spoken with Twilio <Say> instead of a rendered clip, by reason.",
    ["reason"],
)
CLIPS_RENDERED = Counter(
    "callcenter_speech_clips_rendered_total",
    "Lines rendered by ElevenLabs (each billed once), and characters sent.",
    ["outcome"],
)
CHARACTERS_SENT = Counter(
    "callcenter_speech_characters_total", "Characters sent to ElevenLabs for rendering."
)
CLIP_LOOKUPS = Counter(
    "callcenter_speech_clip_lookups_total",
    "Clips asked for, by how they were had: hit (ready), miss (rendered by us), "
    "wait (waited for another process rendering it).",
    ["result"],
)

# --- Read at scrape time --------------------------------------------------------------------


class ScrapeGauge(Collector):
    """A gauge of the database's state now, read at each scrape by the function the app
    owning the rows gives it (``read_by``, from its AppConfig.ready()): this module stays
    free of the apps it measures. One query per scrape; every label value the function
    answers is reported; nothing when the database cannot be read (or no app gave one)."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self._read: Callable[[], Mapping[str, float]] | None = None

    def read_by(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Read the gauge's values, by label value, with ``read`` from now on."""
        self._read = read

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering asks for the names: no query then.
        yield GaugeMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._read is None:
            return
        try:
            values = self._read()
        except DatabaseError:
            logger.warning("%s left out: the database could not be read.", self.name)
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for label, value in values.items():
            family.add_metric([label], value)
        yield family


# Every campaign state is reported (0 when none), so a series never vanishes: calls reads
# it (calls.reports.stats.live_calls_by_campaign_state).
LIVE_CALLS = ScrapeGauge(
    "callcenter_live_calls",
    "Calls live now (pending to in-progress), by their campaign's state.",
    "campaign_state",
)
REGISTRY.register(LIVE_CALLS)
# Each running campaign's abandoned calls over its live-answered ones in the last 30 days
# (0 before any): calls reads it (calls.abandonment.abandonment_by_campaign).
ABANDONMENT_RATE = ScrapeGauge(
    "callcenter_campaign_abandonment_ratio",
    "Running campaigns' abandoned calls (nothing heard from us within 2 s of a live "
    "answer) over their live-answered calls in the last 30 days, by campaign id.",
    "campaign",
)
REGISTRY.register(ABANDONMENT_RATE)


def metrics_allowed(authorization: str) -> bool:
    """Whether a scrape with this Authorization header may read the metrics: any, where
    METRICS_OPEN (development on loopback, no token); else ``Bearer <METRICS_TOKEN>``."""
    if settings.METRICS_OPEN:
        return True
    token = settings.METRICS_TOKEN
    scheme, _, credentials = authorization.partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(credentials.strip().encode(), token.encode())
    )


def export_metrics(request: HttpRequest) -> HttpResponse:
    """/metrics: django_prometheus's export, plus the metrics read at scrape time.

    In multiprocess mode django_prometheus builds a fresh registry from the workers'
    files, which holds no collector of ours; this view adds them to it.
    """
    if not metrics_allowed(request.headers.get("Authorization", "")):
        # 404, not 401: a stranger learns nothing, not even that metrics are served here.
        raise Http404
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(LIVE_CALLS)
        registry.register(ABANDONMENT_RATE)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# --- Conversation ---------------------------------------------------------------------------

MODEL_SECONDS = Histogram(
    "callcenter_model_seconds",
    "Time of one request to the AI model, by kind: reply (a turn of a live call, streamed "
    "to its end) or extraction (a call's outcome).",
    ["kind"],
    buckets=(0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 60.0),
)
MODEL_TOKENS = Counter(
    "callcenter_model_tokens_total",
    "Tokens the AI model billed, by kind: prompt or completion.",
    ["kind"],
)
MODEL_ERRORS = Counter(
    "callcenter_model_errors_total",
    "Failed requests to the AI model (timeout, unavailable, rejected) and answers of it "
    "that were dropped as not valid (invalid_output: a tool call or an outcome).",
    ["reason"],
)


# --- ConversationRelay ----------------------------------------------------------------------

RELAY_SESSIONS = Gauge(
    "callcenter_relay_sessions",
    "ConversationRelay sockets open now (live streamed calls), all web processes summed.",
    multiprocess_mode="livesum",
)
RELAY_ERRORS = Counter(
    "callcenter_relay_errors_total",
    "ConversationRelay trouble, by kind: twilio (an error message from Twilio), refused (a "
    "handshake without a valid signature, or for no live relay call), unreadable (a frame "
    "that is not Twilio's), dropped (the socket closed abnormally on a live call), model "
    "(the model failed on a turn).",
    ["kind"],
)
RELAY_FIRST_TOKEN = Histogram(
    "callcenter_relay_first_token_seconds",
    "ConversationRelay: from the caller's final words reaching us to our first words sent, "
    "the model's own time to its first token included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
