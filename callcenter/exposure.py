"""Whether this server is reached beyond loopback, and whether its key is a published one.

Imported by settings.py (before Django is configured) and by deploy/gunicorn.conf.py, so it
imports nothing of Django's. A server that only this machine reaches may sign with the
development key; one that others reach must not, since anyone may read that key here.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callcenter.bodies import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name, an address, or an address in brackets) is this machine only.

    An unspecified address (0.0.0.0, ::) binds every interface, so it is not loopback.
    """
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def reached_beyond_loopback(*, host: str, app_url_host: str, extra_hosts: Iterable[str]) -> str:
    """What makes the server reachable from other machines ("HOST=0.0.0.0"), or ""."""
    if not is_loopback(host):
        return f"HOST={host}"
    if not is_loopback(app_url_host):
        return f"APP_URL's host {app_url_host}"
    for name in extra_hosts:
        if name and not is_loopback(name):
            return f"ALLOWED_HOSTS_EXTRA's {name}"
    return ""


def is_published_key(key: str, published: Collection[str]) -> bool:
    """Whether ``key`` is one the project published, or a placeholder shaped like one."""
    return key in published or key.startswith(("change", "django-insecure"))


def bind_host(address: str) -> str:
    """The host of a gunicorn bind address: "0.0.0.0:8000", "[::1]:8000", "unix:/run/x"."""
    if address.startswith("unix:"):
        return "localhost"  # a socket file: this machine only
    if address.startswith("fd://"):
        return address  # an inherited socket, bound who knows where: not loopback
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rpartition(":")[0] if ":" in address else address


class LoopbackOnlyWithPublishedKey:
    """ASGI middleware: with a published SECRET_KEY, answer only requests that came in on a
    loopback address (the ASGI scope's ``server``, the socket the server accepted them on).

    settings.py refuses such a key when HOST says the server listens beyond loopback; this
    catches a server started by hand with another address (``uvicorn --host 0.0.0.0``)."""

    def __init__(self, app: ASGIApp, *, key: str, published: Collection[str]) -> None:
        self.app = app
        self.guarded = is_published_key(key, published) or len(key) < 50 or len(set(key)) < 5

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] in ("http", "websocket") else None
        if self.guarded and server and server[1] is not None and not is_loopback(server[0]):
            logger.error(
                "Refused a request on %s: SECRET_KEY is the development key or another the "
                "project published, which anyone could sign with; set a secret of your own",
                server[0],
            )
            if scope["type"] == "http":
                body = b"SECRET_KEY is a published key: this server answers only on loopback.\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
