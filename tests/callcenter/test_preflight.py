"""The go-live checks (`manage.py preflight`) against the fake Twilio, ElevenLabs and
OpenAI over HTTP, the real database and cache, and this app served on a local port."""

from __future__ import annotations

import datetime
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from django.utils import timezone, translation

from callcenter import health, preflight
from callcenter.celery import app as celery_app
from callcenter.preflight import Status
from callcenter.tasks import HEARTBEAT_CACHE_KEY, heartbeat_task
from calls import conversation, telephony
from campaigns.models import Campaign
from templates.models import CallTemplate
from tests.factories import CampaignFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID, GEORGE_ID
from tests.fakes.openai import FakeOpenAI
from tests.fakes.twilio import ACCOUNT_SID
from voices.models import Voice

pytestmark = pytest.mark.django_db

TIMEOUT = 2.0
NUMBER = "+34910000000"  # TWILIO_PHONE_NUMBER in the fake_twilio fixture


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    # The lines are translated; these tests read the English ones.
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _fresh_model_knowledge() -> Iterator[None]:
    # What servers taught about models lives for a process: each test starts without it.
    conversation._LEARNT.clear()
    yield
    conversation._LEARNT.clear()


@pytest.fixture(autouse=True)
def _no_vendor_keys(settings) -> None:
    # Whatever the environment says, a check runs against the fakes a test starts.
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TELEPHONY_BACKEND = "sandbox"
    settings.ELEVENLABS_API_KEY = ""
    settings.OPENAI_API_KEY = ""


@contextmanager
def serving(answer: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A plain HTTP server on a loopback port whose every GET `answer` handles; its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reply(status: int, body: bytes, **headers: str) -> Callable[..., None]:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


# --- Database ----------------------------------------------------------------------------


def test_database_answers_with_every_migration_applied() -> None:
    result = preflight.check_database(timeout=TIMEOUT)

    # PostgreSQL is what production runs on; the embedded SQLite file works but warns.
    if connection.vendor == "postgresql":
        assert result.status == Status.OK
        assert "every migration applied" in result.detail
    else:
        assert result.status == Status.WARN
        assert "DATABASE_URL" in result.action
    assert result.name == "Database"


def test_database_that_does_not_answer_fails(django_db_blocker, closed_port, monkeypatch) -> None:
    # given a database connection that points nowhere
    default = connections["default"]
    if default.vendor == "sqlite":
        monkeypatch.setitem(default.settings_dict, "NAME", "/nonexistent/folder/db.sqlite3")
    else:
        monkeypatch.setitem(default.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(default.settings_dict, "PORT", closed_port)
    with django_db_blocker.unblock():
        default.close()
        try:
            result = preflight.check_database(timeout=TIMEOUT)
        finally:
            default.close()

    assert result.status == Status.FAIL
    assert "does not answer" in result.detail
    assert "DATABASE_URL" in result.action


def test_database_without_a_migration_of_the_release_fails_naming_it() -> None:
    # given a database where the last migration of this release was never applied
    [(app, name)] = MigrationLoader(connection).graph.leaf_nodes("calls")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s AND name = %s", [app, name])

    result = preflight.check_database(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert f"calls.{name}" in result.detail
    assert "migrate" in result.action


def test_database_far_behind_names_its_first_missing_migrations_and_counts_the_rest() -> None:
    # given a database that never had the calls app's migrations (ten or more)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'calls'")
        missing = cursor.rowcount

    with translation.override("en"):
        result = preflight.check_database(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "calls.0001_initial" in result.detail
    assert "calls.0010_turn_clips" not in result.detail
    assert f"and {missing - 5} more" in result.detail


# --- Redis, worker and beat --------------------------------------------------------------


def test_redis_that_answers_is_ok(settings) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the embedded default has no Redis")
    settings.REDIS_URL = "redis://:secret@127.0.0.1:6379/0"  # as shown, never its password

    result = preflight.check_redis(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail.startswith("Redis at redis://127.0.0.1:6379 answers")
    assert "secret" not in result.detail


def test_redis_unset_warns_naming_what_is_used_instead(settings) -> None:
    settings.REDIS_URL = ""

    result = preflight.check_redis(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "file cache and filesystem broker" in result.detail
    assert "REDIS_URL" in result.action


def test_redis_that_does_not_answer_fails_naming_cache_and_broker(
    settings, closed_port, monkeypatch
) -> None:
    # given a cache and a broker at a port nothing listens on
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://127.0.0.1:{closed_port}/0")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    unreachable = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/1",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    started = time.monotonic()
    with override_settings(CACHES=unreachable):
        result = preflight.check_redis(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "cache: " in result.detail and "broker: " in result.detail
    assert "REDIS_PASSWORD" in result.action
    assert time.monotonic() - started < 15


def test_worker_and_beat_are_ok_after_a_recent_heartbeat() -> None:
    heartbeat_task()  # what a worker runs at each of beat's 30-second ticks

    result = preflight.check_worker_and_beat(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert "s ago" in result.detail


def test_worker_and_beat_fail_without_a_heartbeat() -> None:
    cache.delete(HEARTBEAT_CACHE_KEY)

    result = preflight.check_worker_and_beat(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "docker compose up -d worker beat" in result.action


@pytest.mark.parametrize(("minutes", "status"), [(5, Status.WARN), (20, Status.FAIL)])
def test_worker_and_beat_behind_warn_then_fail(minutes: int, status: Status) -> None:
    then = timezone.now() - datetime.timedelta(minutes=minutes)
    cache.set(HEARTBEAT_CACHE_KEY, then.isoformat(), timeout=None)

    result = preflight.check_worker_and_beat(timeout=TIMEOUT)

    assert result.status == status
    assert f"{minutes * 60} s ago" in result.detail


# --- APP_URL -----------------------------------------------------------------------------


def test_app_url_https_is_ok(settings) -> None:
    settings.APP_URL = "https://calls.example.com"

    assert preflight.check_app_url(timeout=TIMEOUT).status == Status.OK


def test_app_url_http_fails_saying_to_serve_https(settings) -> None:
    settings.APP_URL = "http://calls.example.com"

    result = preflight.check_app_url(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "not https" in result.detail
    assert "https://" in result.action


@pytest.mark.parametrize(
    "url", ["https://localhost:8443", "https://127.0.0.1", "https://10.0.0.5", "https://[::1]"]
)
def test_app_url_twilio_cannot_reach_fails(settings, url: str) -> None:
    settings.APP_URL = url

    result = preflight.check_app_url(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "Twilio cannot reach it" in result.detail


@pytest.mark.django_db(transaction=True)
def test_app_health_through_app_url_is_ok_while_http_fails_its_own_line(
    live_server, settings
) -> None:
    # given this app served on a local port, at a plain http:// APP_URL
    settings.APP_URL = live_server.url

    scheme = preflight.check_app_url(timeout=TIMEOUT)
    reached = preflight.check_app_health(timeout=TIMEOUT)

    # then each line says its own: not https, but this app's /health answers through it
    assert scheme.status == Status.FAIL
    assert reached.status == Status.OK
    assert reached.detail.startswith(f"This app answers at {live_server.url}/health")


@pytest.mark.django_db(transaction=True)
def test_app_health_reporting_a_component_down_fails_naming_it(
    live_server, settings, monkeypatch
) -> None:
    def broker_down() -> None:
        raise ConnectionRefusedError("no broker")

    monkeypatch.setitem(health.CHECKS, "broker", broker_down)
    settings.APP_URL = live_server.url

    result = preflight.check_app_health(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "HTTP 503: down: broker" in result.detail


def test_app_health_answered_by_something_else_fails(settings) -> None:
    with serving(reply(200, b"<html>It works!</html>", Content_Type="text/html")) as url:
        settings.APP_URL = url
        result = preflight.check_app_health(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "not with this app's /health" in result.detail


def test_app_health_redirected_fails_naming_where(settings) -> None:
    moved = reply(301, b"", Location="https://www.example.com/health")
    with serving(moved) as url:
        settings.APP_URL = url
        result = preflight.check_app_health(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "redirects to https://www.example.com/health" in result.detail


def test_app_health_that_never_answers_fails_within_the_timeout(settings) -> None:
    # given a port that takes connections and never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings.APP_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"

        started = time.monotonic()
        result = preflight.check_app_health(timeout=1.0)

    assert result.status == Status.FAIL
    assert "did not answer within 1.0 s" in result.detail
    assert time.monotonic() - started < 3


def test_app_health_at_an_https_url_that_fails_is_its_own_failure(settings, closed_port) -> None:
    settings.APP_URL = f"https://127.0.0.1:{closed_port}"

    result = preflight.check_app_health(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "could not be reached" in result.detail
    assert "proxy" in result.action


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_app_health_behind_a_self_signed_certificate_fails(settings, tmp_path: Path) -> None:
    # given an https server whose certificate no authority signed
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.APP_URL = f"https://127.0.0.1:{server.server_address[1]}"
        result = preflight.check_app_health(timeout=TIMEOUT)
    finally:
        server.shutdown()
        server.server_close()

    assert result.status == Status.FAIL
    assert "TLS handshake failed" in result.detail
    assert "self-signed" in result.action


# --- Twilio ------------------------------------------------------------------------------


def test_twilio_without_credentials_fails_saying_what_to_set() -> None:
    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "sandbox carrier" in result.detail
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in result.action
    assert preflight.check_caller_numbers(timeout=TIMEOUT).status == Status.SKIP


def test_twilio_account_active_and_upgraded_is_ok(fake_twilio) -> None:
    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail == f"Callcenter ({ACCOUNT_SID}): Full account, active."
    assert [r.path for r in fake_twilio.requests] == [f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"]


def test_twilio_refused_credentials_fail(fake_twilio, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "0" * 32

    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "refused the credentials (HTTP 401, error 20003)" in result.detail
    assert "TWILIO_AUTH_TOKEN" in result.action


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_twilio_account_not_active_fails(fake_twilio, status: str) -> None:
    fake_twilio.account_status = status

    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert result.detail.endswith(f"Full account, {status}.")
    assert "not active" in result.action


def test_twilio_trial_account_fails(fake_twilio) -> None:
    fake_twilio.account_type = "Trial"

    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "Upgrade the account" in result.action


def test_twilio_credentials_with_the_sandbox_selected_fail(fake_twilio, settings) -> None:
    settings.TELEPHONY_BACKEND = "sandbox"

    result = preflight.check_twilio_account(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "TELEPHONY_BACKEND=sandbox" in result.detail
    assert "set it to twilio" in result.action


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda fake: fake.fail_next(503), id="503"),
        pytest.param(lambda fake: fake.fail_next(429, headers={"Retry-After": "1"}), id="429"),
        pytest.param(lambda fake: fake.delay_next(5), id="timeout"),
    ],
)
def test_twilio_that_does_not_answer_fails_within_the_timeout(fake_twilio, fault) -> None:
    fault(fake_twilio)

    started = time.monotonic()
    result = preflight.check_twilio_account(timeout=1.0)

    assert result.status == Status.FAIL
    assert result.detail.startswith("Twilio did not answer")
    assert "status.twilio.com" in result.action
    assert time.monotonic() - started < 3
    assert len(fake_twilio.requests) == 1  # not retried: the operator runs it again


def test_caller_numbers_of_the_account_or_verified_are_ok_across_pages(
    fake_twilio, campaign, monkeypatch
) -> None:
    # given an account with more numbers than a page holds, one of them TWILIO_PHONE_NUMBER,
    # and a campaign calling from a verified caller id
    monkeypatch.setattr(telephony.twilio, "LIST_PAGE_SIZE", 2)
    for last in "12":
        fake_twilio.add_number(f"+3491000000{last}")
    fake_twilio.add_number(NUMBER)
    fake_twilio.add_caller_id("+34930000000")
    campaign.caller_number = "+34930000000"
    campaign.save(update_fields=["caller_number"])

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail == (
        "2 caller number(s) checked: the account has 3 number(s) and 1 verified caller id(s)."
    )
    pages = fake_twilio.requests_to("GET", "/IncomingPhoneNumbers.json")
    assert [r.query.get("Page") for r in pages] == [None, ["1"]]
    assert pages[1].query["PageToken"][0].startswith("PAPN")


def test_caller_number_of_a_campaign_not_on_the_account_fails_naming_both(
    fake_twilio, campaign, partner, call_template
) -> None:
    # given TWILIO_PHONE_NUMBER on the account, a paused campaign calling from a number
    # that is not, and a cancelled campaign (it dials no more) from another
    fake_twilio.add_number(NUMBER)
    campaign.caller_number = "+34930000001"
    campaign.state = Campaign.State.PAUSED
    campaign.save(update_fields=["caller_number", "state"])
    CampaignFactory(
        partner=partner,
        name="Old",
        template=call_template,
        caller_number="+34930000002",
        state=Campaign.State.CANCELLED,
    )

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert result.detail == (
        "Neither a number of the account nor a verified caller id: +34930000001 (“Spring”)."
    )
    assert "Verified Caller IDs" in result.action


def test_default_caller_number_not_on_the_account_fails(fake_twilio) -> None:
    fake_twilio.add_number("+34910000009")

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert f"{NUMBER} (TWILIO_PHONE_NUMBER)" in result.detail


def test_caller_numbers_without_a_default_number_warn(fake_twilio, settings, campaign) -> None:
    settings.TWILIO_PHONE_NUMBER = ""
    fake_twilio.add_number("+34930000000")
    campaign.caller_number = "+34930000000"
    campaign.save(update_fields=["caller_number"])

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "TWILIO_PHONE_NUMBER is not set" in result.detail


def test_no_caller_number_at_all_fails(fake_twilio, settings) -> None:
    settings.TWILIO_PHONE_NUMBER = ""

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "Set TWILIO_PHONE_NUMBER" in result.action
    assert fake_twilio.requests == []


def test_caller_numbers_whose_second_page_fails_fail(fake_twilio, monkeypatch) -> None:
    monkeypatch.setattr(telephony.twilio, "LIST_PAGE_SIZE", 1)
    fake_twilio.add_number("+34910000001")
    fake_twilio.add_number(NUMBER)
    fake_twilio.fail_next(500, when=lambda request: request.query.get("Page") == ["1"])

    result = preflight.check_caller_numbers(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "HTTP 500, error 20500" in result.detail


# --- The numbers people ring back ------------------------------------------------------------

PUBLIC = "https://calls.example.com"
INBOUND = {
    "voice_url": f"{PUBLIC}/twilio/inbound",
    "voice_fallback_url": f"{PUBLIC}/twilio/inbound/fallback",
    "status_callback": f"{PUBLIC}/twilio/inbound/status",
}


def test_inbound_numbers_pointed_at_this_app_are_ok(fake_twilio, settings) -> None:
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER, **INBOUND)

    result = preflight.check_inbound_numbers(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail == f"1 number(s) send their calls to {PUBLIC}/twilio/inbound."


def test_inbound_numbers_sending_calls_elsewhere_warn_naming_each(
    fake_twilio, settings, campaign
) -> None:
    # given: the default number still on Twilio's demo, a finished campaign's number taken
    # by a TwiML application, and a verified caller id (its own line, not Twilio's)
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER, voice_url="https://demo.twilio.com/welcome/voice/")
    fake_twilio.add_number("+34910000002", **INBOUND, voice_application_sid="AP" + "1" * 32)
    fake_twilio.add_caller_id("+34930000000")
    campaign.caller_number = "+34910000002"
    campaign.state = Campaign.State.COMPLETED
    campaign.save(update_fields=["caller_number", "state"])

    result = preflight.check_inbound_numbers(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert result.detail == (
        "Calls to these numbers do not reach this app: "
        f"{NUMBER} (TWILIO_PHONE_NUMBER): https://demo.twilio.com/welcome/voice/; "
        f"+34910000002 (“Spring”): TwiML application AP{'1' * 32}."
    )
    assert "preflight --configure-numbers" in result.action


def test_inbound_numbers_without_credentials_are_skipped() -> None:
    assert preflight.check_inbound_numbers(timeout=TIMEOUT).status == Status.SKIP


def configured() -> list[preflight.Result]:
    return list(preflight.configure_numbers(timeout=TIMEOUT))


def test_configure_numbers_points_every_number_people_ring_back_at_this_app(
    fake_twilio, settings, campaign, partner, call_template
) -> None:
    # given: the default number, a finished campaign's number, a number no campaign uses
    # and a campaign calling from a verified caller id
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER, voice_url="https://demo.twilio.com/welcome/voice/")
    fake_twilio.add_number("+34910000002")
    fake_twilio.add_number("+34910000003", voice_url="https://other.example.com/voice")
    fake_twilio.add_caller_id("+34930000000")
    campaign.caller_number = "+34930000000"
    campaign.save(update_fields=["caller_number"])
    CampaignFactory(
        partner=partner,
        name="Old",
        template=call_template,
        caller_number="+34910000002",
        state=Campaign.State.COMPLETED,
    )

    # when
    results = configured()

    # then: one line per number in use; the account's are pointed at our webhooks
    assert [(result.name, result.status) for result in results] == [
        (f"Number {NUMBER}", Status.OK),
        ("Number +34910000002", Status.OK),
        ("Number +34930000000", Status.SKIP),
    ]
    assert results[0].detail.startswith(f"Now sends its calls to {PUBLIC}/twilio/inbound")
    assert results[0].detail.endswith("it sent them to https://demo.twilio.com/welcome/voice/.")
    numbers = fake_twilio.numbers
    for phone in (NUMBER, "+34910000002"):
        assert {field: numbers[phone][field] for field in INBOUND} == INBOUND
        assert numbers[phone]["voice_method"] == "POST"
        assert numbers[phone]["status_callback_method"] == "POST"
    assert numbers["+34910000003"]["voice_url"] == "https://other.example.com/voice"
    updates = [request for request in fake_twilio.requests if request.method == "POST"]
    assert len(updates) == 2
    # Run again: nothing left to change.
    again = [result.detail.split(" (")[0] for result in configured()[:2]]
    assert again == [f"Already sends its calls to {PUBLIC}/twilio/inbound"] * 2
    assert preflight.check_inbound_numbers(timeout=TIMEOUT).status == Status.OK


def test_configure_numbers_leaves_a_number_an_application_takes_and_says_so(
    fake_twilio, settings
) -> None:
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER, trunk_sid="TK" + "2" * 32)

    [result] = configured()

    assert result.status == Status.FAIL
    assert result.detail.startswith(f"Its calls go to SIP trunk TK{'2' * 32}")
    assert "Twilio's Console" in result.action
    assert [request.method for request in fake_twilio.requests] == ["GET"]


def test_configure_numbers_a_number_twilio_refuses_fails_and_the_next_is_done(
    fake_twilio, settings, campaign
) -> None:
    settings.APP_URL = PUBLIC
    first = fake_twilio.add_number(NUMBER)
    fake_twilio.add_number("+34910000002")
    campaign.caller_number = "+34910000002"
    campaign.save(update_fields=["caller_number"])
    fake_twilio.fail_next(
        400,
        code=21606,
        message="The phone number is not owned by your account.",
        when=lambda request: request.method == "POST" and first["sid"] in request.path,
    )

    results = configured()

    assert [result.status for result in results] == [Status.FAIL, Status.OK]
    assert "The phone number is not owned by your account." in results[0].detail
    assert fake_twilio.numbers["+34910000002"]["voice_url"] == INBOUND["voice_url"]


@pytest.mark.parametrize("url", ["http://calls.example.com", "https://localhost:8000"])
def test_configure_numbers_refuses_an_app_url_twilio_cannot_use(fake_twilio, settings, url) -> None:
    settings.APP_URL = url
    fake_twilio.add_number(NUMBER)

    [result] = configured()

    assert (result.name, result.status) == ("Configure numbers", Status.FAIL)
    assert result.detail.startswith("Numbers not configured:")
    assert fake_twilio.requests == []


def test_configure_numbers_without_credentials_has_nothing_to_do() -> None:
    [result] = configured()

    assert result.status == Status.SKIP
    assert "sandbox carrier rings the inbound webhooks itself" in result.detail


# --- ElevenLabs --------------------------------------------------------------------------


def test_elevenlabs_shows_the_characters_left(fake_elevenlabs) -> None:
    result = preflight.check_elevenlabs(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail == "creator plan: 88,000 of 100,000 characters left, until 2026-01-01."
    assert [r.path for r in fake_elevenlabs.requests] == ["/v1/user/subscription"]


def test_elevenlabs_without_a_key_warns_that_say_speaks() -> None:
    result = preflight.check_elevenlabs(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "<Say>" in result.detail
    assert preflight.check_default_voice(timeout=TIMEOUT).status == Status.SKIP


def test_elevenlabs_refused_key_fails(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = "wrong-key"

    result = preflight.check_elevenlabs(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert result.detail == "ElevenLabs refused the key: Invalid API key"
    assert "ELEVENLABS_API_KEY" in result.action


def test_elevenlabs_key_without_user_read_warns(fake_elevenlabs) -> None:
    fake_elevenlabs.permissions = {"text_to_speech", "voices_read"}

    result = preflight.check_elevenlabs(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "missing the permission user_read" in result.detail


@pytest.mark.parametrize(("used", "left"), [(95_000, "5,000"), (100_000, "0")])
def test_elevenlabs_with_few_characters_left_warns(fake_elevenlabs, used: int, left: str) -> None:
    fake_elevenlabs.subscription["character_count"] = used

    result = preflight.check_elevenlabs(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert f"{left} of 100,000 characters left" in result.detail


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda fake: fake.fail_next(503, times=5), id="503"),
        pytest.param(lambda fake: fake.fail_next(429, times=5), id="429"),
        pytest.param(lambda fake: fake.delay_next(5), id="timeout"),
    ],
)
def test_elevenlabs_that_does_not_answer_fails_within_the_timeout(fake_elevenlabs, fault) -> None:
    fault(fake_elevenlabs)

    started = time.monotonic()
    result = preflight.check_elevenlabs(timeout=1.0)

    assert result.status == Status.FAIL
    assert result.detail.startswith("ElevenLabs did not answer")
    assert time.monotonic() - started < 3


def test_default_voice_by_its_legacy_name_is_fetched_by_id(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    result = preflight.check_default_voice(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail == f"Sarah ({BELLA_ID}), from ELEVENLABS_DEFAULT_VOICE=Bella."
    assert not Voice.objects.exists()  # the preflight changes nothing


def test_default_voice_chosen_on_the_voices_page_is_checked(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"  # a typo, but staff chose a voice
    VoiceFactory(provider_voice_id=GEORGE_ID, name="George", is_default=True)

    result = preflight.check_default_voice(timeout=TIMEOUT)

    assert result.status == Status.OK
    assert result.detail.endswith("from the default chosen on the Voices page.")


def test_default_voice_that_names_nothing_fails(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"

    result = preflight.check_default_voice(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "“Bellla”, which names no voice" in result.detail
    assert fake_elevenlabs.requests == []


def test_default_voice_elevenlabs_does_not_have_fails(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "AAAAAAAAAAAAAAAAAAAA"

    result = preflight.check_default_voice(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "ElevenLabs has no voice AAAAAAAAAAAAAAAAAAAA" in result.detail


def test_default_voice_with_a_key_that_may_not_read_voices_fails(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    fake_elevenlabs.permissions = {"text_to_speech", "user_read"}

    result = preflight.check_default_voice(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "voices_read" in result.detail
    assert "Voices read permission" in result.action


# --- OpenAI ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o-mini", "o4-mini", "gpt-5-mini"])
def test_model_takes_a_turn_and_an_extraction_as_calls_send_them(
    fake_openai, settings, model: str
) -> None:
    settings.DEFAULT_MODEL = model

    turn = preflight.check_model_turn(timeout=TIMEOUT)
    extraction = preflight.check_model_extraction(timeout=TIMEOUT)

    assert (turn.status, extraction.status) == (Status.OK, Status.OK), (turn, extraction)
    # the very requests of a call, tools and streaming included, with a tiny answer
    sent_turn, sent_extraction = fake_openai.chat_requests
    assert sent_turn["stream"] is True and sent_turn["tools"] == conversation.TOOLS
    assert sent_turn["max_completion_tokens"] < 2100
    assert "tools" not in sent_extraction
    assert turn.detail.startswith(f"{model} takes a turn's request (max_completion_tokens")


def test_server_without_max_completion_tokens_fails_naming_the_setting(settings) -> None:
    with FakeOpenAI(only_max_tokens=True) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "gpt-4o-mini"

        result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "refused max_completion_tokens=16" in result.detail
    assert result.action == "Set OPENAI_TOKEN_PARAMETER=max_tokens."


def test_reasoning_model_sent_max_tokens_fails_naming_the_setting(fake_openai, settings) -> None:
    settings.DEFAULT_MODEL = "o4-mini"
    settings.OPENAI_TOKEN_PARAMETER = "max_tokens"

    result = preflight.check_model_extraction(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert result.action == "Set OPENAI_TOKEN_PARAMETER=max_completion_tokens."


def test_reasoning_effort_the_model_refuses_fails_naming_one_it_takes(
    fake_openai, settings
) -> None:
    settings.DEFAULT_MODEL = "o4-mini"
    settings.OPENAI_REASONING_EFFORT = "minimal"  # o-series: low, medium or high

    result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "refused reasoning_effort=minimal" in result.detail
    assert result.action == "Set OPENAI_REASONING_EFFORT=low."


def test_deployment_name_of_a_reasoning_model_warns_that_calls_adapt(settings) -> None:
    # given a deployment name that hides an o-series model: calls send it a temperature
    with FakeOpenAI(aliases={"voice-agent": "o4-mini"}) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "voice-agent"

        result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "refused temperature=0.7" in result.detail
    assert "calls leave temperature out" in result.action


def test_model_refusals_with_and_without_a_setting_are_all_told(settings) -> None:
    # given a deployment name hiding an o-series model, sent max_tokens and a temperature
    settings.OPENAI_TOKEN_PARAMETER = "max_tokens"
    with FakeOpenAI(aliases={"voice-agent": "o4-mini"}) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "voice-agent"

        result = preflight.check_model_turn(timeout=TIMEOUT)

    # then the setting's refusal fails the line, and the other is told too
    assert result.status == Status.FAIL
    assert "refused max_tokens=" in result.detail and "refused temperature=" in result.detail
    assert result.action.startswith("Set OPENAI_TOKEN_PARAMETER=max_completion_tokens. ")
    assert "calls leave temperature out" in result.action


def test_model_without_json_mode_warns_that_outcomes_are_read_from_text(settings) -> None:
    with FakeOpenAI(aliases={"legacy": "gpt-4"}) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "legacy"

        result = preflight.check_model_extraction(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "refused response_format" in result.detail
    assert "no JSON mode" in result.action


def test_model_refusing_both_token_bounds_fails(settings) -> None:
    with FakeOpenAI(only_max_tokens=True) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "o4-mini"

        result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "takes neither max_completion_tokens nor max_tokens" in result.detail


def test_model_refused_key_fails(fake_openai, settings) -> None:
    settings.OPENAI_API_KEY = "sk-wrong-key-1234"

    result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "did not accept the API key" in result.detail
    assert "sk-wrong-key-1234" not in result.detail
    assert "OPENAI_API_KEY" in result.action


def test_model_the_server_does_not_have_fails(fake_openai, settings) -> None:
    fake_openai.fail_next(404, code="model_not_found", message="The model does not exist.")

    result = preflight.check_model_extraction(timeout=TIMEOUT)

    assert result.status == Status.FAIL
    assert "Set DEFAULT_MODEL" in result.action


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda fake: fake.fail_next(503), id="503"),
        pytest.param(lambda fake: fake.fail_next(429), id="429"),
        pytest.param(lambda fake: fake.hang_next(5), id="timeout"),
    ],
)
@pytest.mark.parametrize("check", [preflight.check_model_turn, preflight.check_model_extraction])
def test_model_that_does_not_answer_fails_within_the_timeout(fake_openai, fault, check) -> None:
    fault(fake_openai)

    started = time.monotonic()
    result = check(timeout=1.0)

    assert result.status == Status.FAIL
    assert "OPENAI_BASE_URL" in result.action
    assert time.monotonic() - started < 3


def test_model_slower_than_model_timeout_warns(fake_openai, settings) -> None:
    settings.MODEL_TIMEOUT = 0.5
    fake_openai.queue_reply("Hola.", first_delay=0.8)

    result = preflight.check_model_turn(timeout=TIMEOUT)

    assert result.status == Status.WARN
    assert "later than MODEL_TIMEOUT (0.5 s) allows" in result.detail


def test_no_model_key_warns_unless_a_campaign_needs_the_model(campaign) -> None:
    # given no key and no campaign that may dial with an AI template
    campaign.template.mode = CallTemplate.Mode.SCRIPTED
    campaign.template.save(update_fields=["mode"])
    assert preflight.check_model_turn(timeout=TIMEOUT).status == Status.WARN
    assert preflight.check_model_extraction(timeout=TIMEOUT).status == Status.SKIP

    # when the campaign's template is an AI one
    campaign.template.mode = CallTemplate.Mode.AI
    campaign.template.save(update_fields=["mode"])
    result = preflight.check_model_turn(timeout=TIMEOUT)

    # then going live without the key fails
    assert result.status == Status.FAIL
    assert "1 campaign(s) that may dial have an AI template" in result.detail


# --- The command -------------------------------------------------------------------------


def run_command(*arguments: str) -> tuple[int, list[str]]:
    out = StringIO()
    try:
        call_command("preflight", *arguments, stdout=out, no_color=True)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, out.getvalue().splitlines()


def test_command_prints_one_line_per_check_and_exits_1_on_a_failure() -> None:
    code, lines = run_command("--timeout", "1")

    assert code == 1
    *checks, summary = lines
    assert len(checks) == len(preflight.CHECKS)
    assert {line.split()[0] for line in checks} <= {"OK", "WARN", "FAIL", "SKIP"}
    twilio = next(line for line in checks if "Twilio account:" in line)
    assert twilio.startswith("FAIL  Twilio account: No Twilio credentials")
    assert " → Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in twilio
    assert summary.endswith(": not ready to go live.")
    assert summary.startswith(f"{sum(line.startswith('FAIL') for line in checks)} checks failed")


@pytest.mark.django_db(transaction=True)
def test_command_exits_0_when_no_check_fails(
    live_server, settings, fake_twilio, fake_elevenlabs, fake_openai, monkeypatch
) -> None:
    # given everything working, this app served at APP_URL (over http, as tests can only
    # serve it: that one line is left out) and a worker's recent heartbeat
    settings.APP_URL = live_server.url
    monkeypatch.setattr(
        preflight, "CHECKS", [c for c in preflight.CHECKS if c is not preflight.check_app_url]
    )
    fake_twilio.add_number(NUMBER)
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    heartbeat_task()

    code, lines = run_command("--timeout", "5")

    assert code == 0, "\n".join(lines)
    marks = [line.split()[0] for line in lines[:-1]]
    assert set(marks) <= {"OK", "WARN"}
    assert lines[-1].startswith(("No check failed", "Every check passed"))


def test_command_configures_the_numbers_first_then_checks(fake_twilio, settings) -> None:
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER)

    code, lines = run_command("--timeout", "1", "--configure-numbers")

    assert code == 1  # other checks fail here (no database URL, no vendors)
    assert lines[0].startswith(f"OK    Number {NUMBER}: Now sends its calls to {PUBLIC}")
    inbound = next(line for line in lines if "Twilio inbound numbers:" in line)
    assert inbound.startswith("OK")
    assert len(lines) == len(preflight.CHECKS) + 2


def test_command_without_the_option_changes_no_number(fake_twilio, settings) -> None:
    settings.APP_URL = PUBLIC
    fake_twilio.add_number(NUMBER)

    _code, lines = run_command("--timeout", "1")

    assert [request.method for request in fake_twilio.requests] == ["GET"] * len(
        fake_twilio.requests
    )
    inbound = next(line for line in lines if "Twilio inbound numbers:" in line)
    assert inbound.startswith("WARN")
    assert fake_twilio.numbers[NUMBER]["voice_url"] is None


def test_command_line_of_a_check_that_breaks_fails_and_the_others_follow(
    fake_twilio, monkeypatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("the SDK changed")

    monkeypatch.setattr(telephony, "fetch_account", broken)

    code, lines = run_command("--timeout", "1")

    assert code == 1
    twilio = next(line for line in lines if "Twilio account:" in line)
    assert "The check itself failed: RuntimeError: the SDK changed" in twilio
    assert any(
        line.startswith(("OK", "WARN", "FAIL", "SKIP")) and "OpenAI" in line for line in lines
    )


def test_command_never_hangs_when_every_vendor_hangs(
    settings, fake_twilio, fake_elevenlabs, fake_openai
) -> None:
    fake_twilio.delay_next(30, times=5)
    fake_elevenlabs.delay_next(30, times=5)
    fake_openai.hang_next(30, times=5)
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"

    started = time.monotonic()
    code, lines = run_command("--timeout", "1")

    assert code == 1
    assert time.monotonic() - started < 20
    for vendor in ("Twilio account", "ElevenLabs account", "OpenAI turn", "OpenAI extraction"):
        line = next(line for line in lines if f"{vendor}:" in line)
        assert line.startswith("FAIL"), line


def test_command_refuses_a_timeout_that_is_not_positive() -> None:
    code, _lines = run_command("--timeout", "0")

    assert code == 2
