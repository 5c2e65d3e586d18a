from __future__ import annotations

import importlib
import sys

import pytest
from django.db import connections
from django.test import override_settings

from callcenter.celery import app as celery_app
from tests.factories import VoiceFactory


def unreachable_redis_cache(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


@pytest.mark.django_db
def test_health_all_components_up_answers_200(client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "up"
    assert body["down"] == []
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "up",
        "cache": "up",
        "broker": "up",
        "relay": "up",
    }
    assert response["Cache-Control"].startswith("max-age=0")


def test_health_database_unreachable_answers_503_naming_it(
    client, django_db_blocker, closed_port, monkeypatch
) -> None:
    # given a database connection that points nowhere
    connection = connections["default"]
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/folder/db.sqlite3")
    else:
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", closed_port)
    with django_db_blocker.unblock():
        connection.close()
        try:
            # when
            response = client.get("/health")
        finally:
            connection.close()

    # then
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["database"]
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["database"]["error"] == "OperationalError"
    assert body["components"]["cache"]["status"] == "up"


@pytest.mark.django_db
def test_health_redis_cache_unreachable_answers_503_naming_it(client, closed_port) -> None:
    with override_settings(CACHES=unreachable_redis_cache(closed_port)):
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]
    assert response.json()["components"]["cache"]["error"]


@pytest.mark.django_db
def test_health_broker_unreachable_answers_503_naming_it(client, closed_port, monkeypatch) -> None:
    monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://127.0.0.1:{closed_port}/0")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    monkeypatch.setitem(celery_app.conf, "broker_transport", None)  # the embedded default's

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]


@pytest.mark.django_db
@pytest.mark.parametrize("module", ["websockets", "channels", "calls.relay.routing"])
def test_health_relay_not_servable_answers_503_naming_it(client, monkeypatch, module) -> None:
    # given a module the WebSocket side needs that cannot be imported
    monkeypatch.setitem(sys.modules, module, None)

    response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["relay"]
    assert body["components"]["relay"]["error"] == "ModuleNotFoundError"
    assert body["components"]["database"]["status"] == "up"


@pytest.mark.django_db
def test_health_relay_without_a_websocket_route_answers_503_naming_it(client, monkeypatch) -> None:
    routing = importlib.import_module("calls.relay.routing")
    monkeypatch.setattr(routing, "websocket_urlpatterns", [])

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["down"] == ["relay"]
    assert response.json()["components"]["relay"]["error"] == "ImproperlyConfigured"


@pytest.mark.django_db
def test_health_reports_last_heartbeat(client) -> None:
    from callcenter.tasks import heartbeat_task

    heartbeat_task()

    heartbeat = client.get("/health").json()["heartbeat"]
    assert 0 <= heartbeat["age_seconds"] < 60


@pytest.mark.django_db
def test_health_refuses_post(client) -> None:
    assert client.post("/health").status_code == 405


# --- Settings the product works around -----------------------------------------------------


@pytest.mark.django_db
def test_health_names_a_default_voice_that_resolves_to_nothing(client, settings) -> None:
    # given ElevenLabs configured, and a default voice no voice of the catalogue answers to
    settings.ELEVENLABS_API_KEY = "key"
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"

    response = client.get("/health", headers={"accept-language": "en"})

    # then it says so, naming the setting, its value and what to do; the app stays in
    # service (calls still speak, with <Say>), so the status is still 200
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "up"
    (warning,) = body["warnings"]
    assert (warning["setting"], warning["value"]) == ("ELEVENLABS_DEFAULT_VOICE", "Bellla")
    assert "Set ELEVENLABS_DEFAULT_VOICE to a voice id" in warning["problem"]


@pytest.mark.django_db
def test_health_has_no_warning_when_the_default_voice_resolves(client, settings) -> None:
    settings.ELEVENLABS_API_KEY = "key"
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    VoiceFactory(provider_voice_id="EXAVITQu4vr4xnSDxMaL", name="Sarah")

    assert client.get("/health").json()["warnings"] == []


@pytest.mark.django_db
def test_health_has_no_voice_warning_without_elevenlabs(client, settings) -> None:
    settings.ELEVENLABS_API_KEY = ""
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"

    assert client.get("/health").json()["warnings"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("app_env", ["production", "staging"])
def test_health_warns_that_a_deployment_places_no_real_calls(client, settings, app_env) -> None:
    # given a deployment on the simulated carrier, set on purpose
    settings.APP_ENV = app_env
    settings.TELEPHONY_BACKEND = "sandbox"

    response = client.get("/health", headers={"accept-language": "en"})

    # then monitoring is told, and the app stays in service
    assert response.status_code == 200
    (warning,) = response.json()["warnings"]
    assert (warning["setting"], warning["value"]) == ("TELEPHONY_BACKEND", "sandbox")
    assert "no real calls are placed" in warning["problem"]
    assert "TWILIO_ACCOUNT_SID" in warning["problem"]


@pytest.mark.django_db
@pytest.mark.parametrize(("app_env", "backend"), [("production", "twilio"), ("test", "sandbox")])
def test_health_has_no_carrier_warning_otherwise(client, settings, app_env, backend) -> None:
    settings.APP_ENV = app_env
    settings.TELEPHONY_BACKEND = backend

    assert client.get("/health").json()["warnings"] == []
