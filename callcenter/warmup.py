"""What a web process prepares before its first request, so that no caller waits for it.

A new process (a start, a deploy, or gunicorn replacing a worker after `max_requests`)
would otherwise make its database pool and its vendor clients during its first turns,
adding tens of milliseconds to each of them.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Open the database pool and make the vendor clients. Never fails: a service that is
    down now is met again, and reported, by the first request that needs it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _warm_up()
        return
    # `uvicorn --workers N` and `uvicorn --reload` import the application inside their
    # running event loop, where Django refuses database I/O (SynchronousOnlyOperation).
    # A thread of its own may do it; nothing is served before the import ends anyway.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-up") as pool:
        pool.submit(_warm_up).result()


def _warm_up() -> None:
    from calls import conversation
    from voices import speech

    try:
        connection.ensure_connection()
    except DatabaseError as error:
        logger.warning("Database not reachable at start-up (%s); requests will retry.", error)
    finally:
        connection.close()  # back to the pool, or closed when there is none
    conversation.tls_context()
    speech.prepare_client()
