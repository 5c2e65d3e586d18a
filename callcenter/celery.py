"""The Celery application: configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
)

from callcenter.logging import bind_task_context, unbind_task_context

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer
    from wsgiref.types import StartResponse, WSGIEnvironment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

logger = logging.getLogger(__name__)

app = Celery("callcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project's own tasks live in callcenter/tasks.py; callcenter is not an app.
app.autodiscover_tasks(["callcenter"])
# The sandbox carrier's task lives in its package (calls/telephony/sandbox/tasks.py).
app.autodiscover_tasks(["calls.telephony.sandbox"])

# A task's logs carry its id as their request id, as a web request's carry its own.
task_prerun.connect(bind_task_context, weak=False)
task_postrun.connect(unbind_task_context, weak=False)


# --- Worker metrics -----------------------------------------------------------------------
# What tasks count (calls placed, dial errors, model time...) is counted in the worker's
# processes, which serve no /metrics. With WORKER_METRICS_PORT set, the worker's main
# process serves them on that port, summed over its pool's processes through
# prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which the deployment
# sets for the worker only and this empties at start).


@worker_init.connect
def _prepare_metrics_folder(**_kwargs: object) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not _metrics_port():
        return
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


@worker_ready.connect
def _serve_metrics(**_kwargs: object) -> WSGIServer | None:
    """Serves the worker's metrics on WORKER_METRICS_PORT; returns the server (or None)."""
    port = _metrics_port()
    if not port:
        return None
    import threading
    from wsgiref.simple_server import make_server

    from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess
    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

    from callcenter.metrics import metrics_allowed

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    metrics = make_wsgi_app(registry)

    # prometheus_client's start_http_server, with the web's /metrics rule: METRICS_TOKEN as
    # a bearer token wherever the web's /metrics asks for it.
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not metrics_allowed(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found\n"]
        return metrics(environ, start_response)

    server = make_server("", port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_kwargs: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and _metrics_port():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def _metrics_port() -> int:
    from django.conf import settings

    return settings.WORKER_METRICS_PORT


# --- The voice catalogue ------------------------------------------------------------------
# A new deployment with an ElevenLabs key has an empty catalogue until the nightly sync:
# the first worker to start fetches it (the others starting with it find the claim taken).


@worker_ready.connect
def _sync_an_empty_voice_catalogue(**_kwargs: object) -> None:
    from django.db import DatabaseError, connections

    from voices.services import queue_first_voice_sync

    try:
        queue_first_voice_sync()
    except DatabaseError as exc:  # the worker serves all the same; the nightly sync remains
        logger.warning("Voice catalogue not checked at the worker's start: %r", exc)
    finally:
        # The main process runs no task: it keeps no connection open for its pool to inherit.
        connections.close_all()
