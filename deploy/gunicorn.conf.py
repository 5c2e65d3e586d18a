"""Gunicorn for the web service: a few uvicorn workers serving Django's ASGI application.

    gunicorn --config deploy/gunicorn.conf.py

Gunicorn supervises the processes (restarts, graceful reloads, timeouts); each uvicorn
worker serves many requests at once, so a webhook waiting on a vendor holds no process.
The same workers serve ConversationRelay's WebSockets (`/relay/<call_id>/`): a live call
holds one for as long as it lasts, which is what the WebSocket settings below are for.
Variables (all optional): HOST, PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, LOG_LEVEL,
LOG_FORMAT, APP_ENV. See docs/deploy.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from uvicorn_worker import UvicornWorker


def _int(name: str, default: int, *, minimum: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum} (got {value!r})")
    return int(value)


# A worker whose event loop stays blocked for `timeout` seconds is killed and replaced: the
# uvicorn worker tells gunicorn it is alive from its event loop's tick, not per request, so
# a WebSocket open for an hour (a long call) never counts against it; only a loop that
# stops turning does.
timeout = 60
# On a stop or a reload, uvicorn closes every live WebSocket at once with code 1012
# ("service restart"; uvicorn/protocols/websockets/websockets_sansio_impl.py, shutdown()):
# no setting lets a live ConversationRelay call run on through a restart in this worker.
# Twilio, asked to (RELAY_APPLICATION_RECONNECT), opens a dropped socket again and another
# worker goes on with the call; where it does not, it ends that session as failed and asks
# the <Connect> action URL, which another worker answers with an apology and a hang-up.
# What the seconds below give is the time for HTTP requests in flight and for the closed
# calls' consumers to record how they ended.
graceful_timeout = 30
# uvicorn's own bound of the same wait, a little shorter: at it, uvicorn cancels what is
# still running, so that its cleanup runs before gunicorn's SIGKILL at graceful_timeout.
_uvicorn_graceful = graceful_timeout - 5


class CallcenterWorker(UvicornWorker):
    """uvicorn without the Server header and the lifespan protocol Django lacks, and with
    WebSocket settings for ConversationRelay (names: uvicorn/config.py, Config)."""

    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "lifespan": "off",
        # The websockets library, named: "auto" would fall back to wsproto, or to refusing
        # every upgrade with a warning, should websockets go missing; named, a missing one
        # stops the worker at boot. The Sans-I/O implementation is the one uvicorn keeps:
        # its "websockets" is the library's legacy one, deprecated (uvicorn 0.54 warns).
        "ws": "websockets-sansio",
        # A ping every 20 s, and a peer that has not answered within 20 s is gone (a caller's
        # network, Twilio's side or a proxy that dropped the socket without a close): the
        # call is over either way, and the consumer learns it now rather than at the next
        # write. Any WebSocket peer answers pings (RFC 6455, 5.5.2). The ping also keeps
        # proxies and load balancers from closing a socket they think idle: 20 s is under
        # the usual 60 s (AWS ALB, nginx's proxy_read_timeout).
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        # ConversationRelay sends small JSON text frames: a prompt is one utterance, the
        # setup message carries our own <Parameter>s, from TwiML Twilio caps at 64 kB
        # (error 11750). uvicorn's default, 16 MiB, would let one frame take that much
        # memory; anything above 64 KiB is refused with close code 1009 (message too big).
        "ws_max_size": 64 * 1024,
        # No permessage-deflate: frames of a few hundred bytes gain little from it, and
        # each socket would keep a compressor and a decompressor for the whole call.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": _uvicorn_graceful,
    }


wsgi_app = "callcenter.asgi:application"
worker_class = CallcenterWorker

_host = os.environ.get("HOST", "").strip() or "0.0.0.0"  # noqa: S104 - a container's port
_port = _int("PORT", 8000, minimum=1)
bind = [f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"]

# The usual 2 x cores + 1, capped: each worker is async and keeps its own database
# connections, so more processes buy little beyond the cores and cost connections.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
workers = _int("WEB_CONCURRENCY", min(2 * (_cores or 1) + 1, 8), minimum=1)

# Longer than the idle timeout of the load balancer in front (60 s on most), so that it,
# not us, closes idle connections and never sends a request down a closing one.
keepalive = 65
# Workers are not recycled after a number of requests (max_requests stays 0): a recycled
# worker shuts down as on a reload, and that closes the live calls it holds (above). The
# container's memory limit bounds a worker instead (docker-compose.prod.yml): one killed
# there is replaced by gunicorn, as a crashed one is.
max_requests = 0

# Addresses whose X-Forwarded-For/-Proto are believed: the TLS-terminating proxy's. "*"
# only where nothing but the proxy can reach this port.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1,::1"

# Workers' heartbeat files live in memory: a container's disk may stall and get healthy
# workers killed. Gunicorn creates them with mkstemp, so a shared folder is safe.
_memory = "/dev/shm"  # noqa: S108
if os.path.isdir(_memory):
    worker_tmp_dir = _memory

# Every worker counts the requests it serves; in prometheus_client's multiprocess mode each
# writes its metrics to this folder and /metrics adds them up, whichever worker answers.
# The folder belongs to this server (its master's pid) and starts empty.
_metrics_parent = _memory if os.path.isdir(_memory) else tempfile.gettempdir()
_metrics = Path(_metrics_parent, f"callcenter-metrics-{os.getpid()}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics)


def on_starting(server) -> None:
    # The settings refuse a published SECRET_KEY on a server others reach: they learn where
    # this one listens from HOST, set here to the bind in force (--bind on the command line
    # wins over the one above). Each worker loads the settings as it boots (never this
    # process: workers would inherit them, loaded before callcenter/asgi.py chose its
    # database pool); a refusal there stops the server before any request is answered.
    from callcenter.exposure import bind_host, is_loopback

    hosts = [bind_host(address) for address in server.cfg.bind]
    os.environ["HOST"] = next((host for host in hosts if not is_loopback(host)), hosts[0])
    shutil.rmtree(_metrics, ignore_errors=True)
    _metrics.mkdir(mode=0o700, parents=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    shutil.rmtree(_metrics, ignore_errors=True)


# No access log: Django's RequestContextMiddleware logs one line per request, with the
# request id and the call's SID. Gunicorn's own lines (boots, restarts, timeouts) go to
# stdout in the project's format.
accesslog = None
loglevel = os.environ.get("LOG_LEVEL", "").strip().lower() or "info"
_app_env = os.environ.get("APP_ENV", "").strip() or "development"
_log_format = os.environ.get("LOG_FORMAT", "").strip() or (
    "plain" if _app_env in ("development", "test") else "json"
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_phone_numbers": {"()": "callcenter.logging.MaskPhoneNumbersFilter"}},
    "formatters": {
        "plain": {"()": "callcenter.logging.PlainFormatter"},
        "json": {"()": "callcenter.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": _log_format,
            "filters": ["mask_phone_numbers"],
        }
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}

proc_name = "callcenter-web"
# The orchestrator scales and restarts containers; no gunicornc socket in $HOME.
control_socket_disable = True
