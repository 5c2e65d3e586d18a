"""The name server and the way out, as a test says: ``socket.getaddrinfo`` answering what
each name is scripted to, and ``socket.create_connection`` that reaches only loopback.

httpx connects through ``socket.create_connection`` (httpcore/_backends/sync.py), which
looks names up with ``socket.getaddrinfo`` (CPython's Lib/socket.py); patching both module
attributes stands in for DNS and the internet without leaving the machine. A connection to
a public address "routed" here reaches a local server standing for it; to loopback it goes
through; to anything else it is refused.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REAL_GETADDRINFO = socket.getaddrinfo
REAL_CREATE_CONNECTION = socket.create_connection

# A CA of the tests and a certificate it signed for hooks.partner.test (valid until 2126):
# made with `openssl req -x509` (the CA) and `openssl x509 -req` (the leaf, with
# subjectAltName=DNS:hooks.partner.test); the CA's key was not kept.
TLS_DIR = Path(__file__).parent / "tls"
TEST_CA = TLS_DIR / "ca.pem"
TLS_NAME = "hooks.partner.test"


def server_tls() -> ssl.SSLContext:
    """What a local server needs to serve HTTPS as hooks.partner.test."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_DIR / "hooks.pem", TLS_DIR / "hooks.key")
    return context


@dataclass
class Resolver:
    """``socket.getaddrinfo`` as a (hostile) name server answers: each name has a list of
    answers, one per lookup, the last one repeating; None fails the lookup. Hosts not
    scripted are read as numbers only (no DNS): 127.1, 2130706433, ::1."""

    answers: dict[str, list[list[str] | None]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, *args: Any
    ) -> list[tuple]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return REAL_GETADDRINFO(host, port, family, type, 0, socket.AI_NUMERICHOST)
        self.lookups.append(name)
        queue = self.answers[name]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_info(address, int(port or 0)) for address in answer]


@dataclass
class Internet:
    """``socket.create_connection`` on a machine whose only way out is this: a name is
    looked up first (as the real one does), then each address tried in turn."""

    routes: dict[tuple[str, int], int] = field(default_factory=dict)  # (address, port): local port
    connections: list[tuple[str, int]] = field(default_factory=list)

    def create_connection(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        host, port = address[0], int(address[1])
        for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            target = info[4][0]
            self.connections.append((target, port))
            if (target, port) in self.routes:
                local = ("127.0.0.1", self.routes[target, port])
                return REAL_CREATE_CONNECTION(local, *args, **kwargs)
            if ipaddress.ip_address(target.split("%")[0]).is_loopback:
                return REAL_CREATE_CONNECTION((target, port), *args, **kwargs)
        raise ConnectionRefusedError(f"no route to {host}:{port} in this test")


def _info(address: str, port: int) -> tuple:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
