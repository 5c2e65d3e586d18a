"""GET /health: is every component the product needs reachable from this process?

It also names settings that leave the product working but not as configured
(``warnings``), such as a default voice that resolves to nothing. Those keep the answer
200: /health decides whether load balancers send traffic here and orchestrators restart
the process, and neither helps with a setting, while taking the app out of service would
stop the calls (they still speak, with <Say>) and the admin where the fix is made.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from callcenter.celery import app as celery_app
from callcenter.tasks import HEARTBEAT_CACHE_KEY
from calls.telephony import is_simulated_deployment
from voices.services import default_voice_problem

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache did not return what was written")
    cache.delete(key)


def check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        # kombu sleeps any number of seconds; celery-types' stub types the step as int.
        conn.ensure_connection(
            max_retries=1,
            interval_start=0,
            interval_step=0.2,  # type: ignore[arg-type]
            timeout=3,
        )


# Where ConversationRelay's WebSocket routes are (callcenter/asgi.py serves them).
RELAY_ROUTING = "calls.relay.routing"


def check_relay() -> None:
    """ConversationRelay's WebSockets can be served: the library uvicorn upgrades with, Channels
    and the relay's routes load, with a route. Imports only: cheap after the first time."""
    importlib.import_module("websockets")
    importlib.import_module("channels")
    routing = importlib.import_module(RELAY_ROUTING)
    if not getattr(routing, "websocket_urlpatterns", None):
        raise ImproperlyConfigured(f"{RELAY_ROUTING} routes no WebSocket")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "relay": check_relay,
}


def heartbeat_at() -> datetime.datetime | None:
    """When a worker last ran beat's heartbeat tick (None: never, as far as the cache
    knows). Raises what the cache raises."""
    value = cache.get(HEARTBEAT_CACHE_KEY)
    return parse_datetime(value) if isinstance(value, str) else None


def _last_heartbeat() -> dict[str, object] | None:
    """When a worker last ran beat's heartbeat tick: shows worker and beat are alive."""
    try:
        when = heartbeat_at()
    except Exception:  # noqa: BLE001 - the cache check above already reports it
        return None
    if when is None:
        return None
    return {
        "at": when.isoformat(),
        "age_seconds": round((timezone.now() - when).total_seconds(), 1),
    }


def _warnings(database_up: bool) -> list[dict[str, str]]:
    """Settings the product works around rather than with, or that monitoring should know
    of: each names the setting, its value, what is wrong and what to do (``problem``)."""
    warnings = []
    if is_simulated_deployment():
        warnings.append(
            {
                "setting": "TELEPHONY_BACKEND",
                "value": settings.TELEPHONY_BACKEND,
                "problem": _(
                    "This deployment uses the simulated carrier: no real calls are placed. "
                    "To place them, set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN and unset "
                    "TELEPHONY_BACKEND."
                ),
            }
        )
    if not database_up:
        return warnings  # the database check already says why nothing can be read
    try:
        problem = default_voice_problem()
    except DatabaseError as exc:  # down since its check: reported there next time
        logger.warning("health: default voice not checked: %r", exc)
        return warnings
    if problem:
        warnings.append(
            {
                "setting": "ELEVENLABS_DEFAULT_VOICE",
                "value": settings.ELEVENLABS_DEFAULT_VOICE,
                "problem": str(problem),
            }
        )
    return warnings


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 with every component up, 503 naming those that are down; ``warnings`` lists
    misconfigured settings without changing the status."""
    components: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        # Any failure of a dependency means "down"; the class name says which kind.
        except Exception as exc:  # noqa: BLE001
            logger.warning("health check %s failed: %r", name, exc)
            component: dict[str, object] = {"status": "down", "error": type(exc).__name__}
            if settings.DEBUG:
                component["detail"] = str(exc)
        else:
            component = {"status": "up"}
        component["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        components[name] = component
    down = [name for name, component in components.items() if component["status"] == "down"]
    body = {
        "status": "down" if down else "up",
        "app": settings.APP_NAME,
        "components": components,
        "down": down,
        "warnings": _warnings(database_up="database" not in down),
        "heartbeat": _last_heartbeat(),
    }
    return JsonResponse(body, status=503 if down else 200)
