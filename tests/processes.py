"""What tests (and benchmarks) that start the project's own processes share."""

from __future__ import annotations

import os
import socket

from django.db import connections


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process (web server, Celery worker or beat) that must run on
    the test settings and the test database, plus ``extra``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CALLCENTER_TEST_DATABASE_NAME": str(connections["default"].settings_dict["NAME"]),
        **extra,
    }


def end_other_sessions() -> None:
    """End every other session on the test database (PostgreSQL): threads of async code
    keep connections of their own, and a database with sessions cannot be dropped."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
