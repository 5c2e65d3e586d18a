"""A web process prepares its database pool and vendor clients before its first request."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from callcenter.warmup import warm_up
from calls import conversation
from voices import speech


@pytest.fixture
def fresh_clients():
    conversation.tls_context.cache_clear()
    speech._client.cache_clear()
    yield
    conversation.tls_context.cache_clear()
    speech._client.cache_clear()


@pytest.mark.django_db
@override_settings(ELEVENLABS_API_KEY="key", ELEVENLABS_BASE_URL="http://127.0.0.1:9")
def test_warm_up_makes_the_clients_before_any_request(fresh_clients) -> None:
    warm_up()

    assert conversation.tls_context.cache_info().currsize == 1
    assert speech._client.cache_info().currsize == 1


@pytest.mark.django_db
@override_settings(ELEVENLABS_API_KEY="")
def test_warm_up_makes_no_speech_client_without_a_key(fresh_clients) -> None:
    warm_up()

    assert speech._client.cache_info().currsize == 0


@pytest.mark.django_db(transaction=True)
def test_warm_up_inside_a_running_event_loop_reaches_the_database(
    monkeypatch, fresh_clients
) -> None:
    # given the import of `uvicorn --workers N`, inside the worker's running event loop
    reached = []
    original = type(connection._connections["default"]).ensure_connection

    def ensure_connection(self) -> None:
        original(self)
        reached.append((threading.current_thread().name.split("_")[0], self.is_usable()))

    monkeypatch.setattr(
        type(connection._connections["default"]), "ensure_connection", ensure_connection
    )

    async def import_the_application() -> None:
        warm_up()  # no SynchronousOnlyOperation

    asyncio.run(import_the_application())

    # then the database was reached, from a thread of the warm-up's own
    assert ("warm-up", True) in reached
    assert conversation.tls_context.cache_info().currsize == 1


def test_warm_up_survives_an_unreachable_database(monkeypatch, caplog, fresh_clients) -> None:
    def refuse() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    with caplog.at_level(logging.WARNING, logger="callcenter.warmup"):
        warm_up()  # does not raise: the first request meets the database again

    assert "Database not reachable at start-up" in caplog.text
    assert conversation.tls_context.cache_info().currsize == 1


@override_settings(OPENAI_API_KEY="key", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
def test_every_event_loop_has_its_client_and_all_share_one_tls_context(fresh_clients) -> None:
    async def client():
        return conversation._async_client(api_key="key", base_url="http://127.0.0.1:9/v1")

    first, second = asyncio.run(client()), asyncio.run(client())

    assert first is not second
    assert first._client._transport._pool._ssl_context is conversation.tls_context()
    assert second._client._transport._pool._ssl_context is conversation.tls_context()
