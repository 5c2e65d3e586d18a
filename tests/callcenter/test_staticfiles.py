"""The middleware chain stays async under the ASGI server."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient
from django.utils.module_loading import import_string


@pytest.mark.parametrize("path", settings.MIDDLEWARE)
def test_every_middleware_can_run_async(path) -> None:
    # One sync-only middleware makes Django run the whole chain below it, async webhooks
    # included, one request at a time in its single thread for sync code.
    middleware = import_string(path)
    assert getattr(middleware, "async_capable", False), path  # Django assumes sync only


def test_static_files_are_served_from_the_async_chain(settings) -> None:
    response = async_to_sync(AsyncClient().get)(settings.STATIC_URL + "admin/css/base.css")

    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])
