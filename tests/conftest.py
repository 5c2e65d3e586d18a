"""Fixtures shared by every test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import get_resolver
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from calls import telephony
from campaigns.models import Campaign, Partner
from campaigns.services import create_api_key, onboard_partner
from templates.models import CallTemplate
from tests.factories import CallTemplateFactory, CampaignFactory, PartnerFactory
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.openai import FakeOpenAI
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.fakes.twilio_spec import TwilioSpec
from tests.partners import trust
from tests.processes import child_env, end_other_sessions, free_port
from tests.s3 import S3Server, s3_server
from voices import speech

ROOT = Path(__file__).resolve().parent.parent

# Fixtures that start one of the product's processes (a Celery worker, a web server): a test
# using one is `slow` (pyproject.toml's markers). Tests that start processes themselves
# carry the mark explicitly.
PROCESS_FIXTURES = frozenset({"celery_worker_process", "web_server"})
SLOW_FOLDERS = {"e2e": ("slow",), "browser": ("slow", "browser")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start real processes or a browser, so that `make test-fast`
    (pytest -m "not slow") leaves them out: by the fixtures they use and their folder."""
    for item in items:
        folder = item.path.relative_to(ROOT / "tests").parts[0]
        names = SLOW_FOLDERS.get(folder, ())
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            names = (*names, "slow")
        for name in dict.fromkeys(names):
            item.add_marker(name)


@pytest.fixture(scope="session", autouse=True)
def _urls_of_the_test_settings() -> None:
    """URLs are built once per process, from the settings it started with: the sandbox
    carrier's routes only when it is the backend (calls/urls.py), as tests/settings.py has
    it. Built here, so that a first test that switches to Twilio does not drop them."""
    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and what it includes


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    yield
    cache.clear()


@pytest.fixture
def partner(db: None) -> Partner:
    """A partner trusted with the suite's numbers and pacing (tests/partners.py)."""
    return PartnerFactory(name="Acme", trusted=True)


@pytest.fixture
def call_template(partner: Partner) -> CallTemplate:
    """An AI template that passes validation and the disclosure lint."""
    return CallTemplateFactory(
        partner=partner,
        name="Recordatorio",
        variables={"first_name": "Lucía"},
        greeting=(
            "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
        ),
        instructions="Confirma la cita de {{ first_name }}.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
        closing_line="Gracias, adiós.",
    )


@pytest.fixture
def campaign(partner: Partner, call_template: CallTemplate) -> Campaign:
    return CampaignFactory(partner=partner, name="Spring", template=call_template)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session", autouse=True)
def _end_other_database_sessions(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """At the end, end the test database's sessions held by other threads (the async
    webhooks' pool keeps a connection per thread), so that it can be dropped."""
    yield
    with django_db_blocker.unblock():
        end_other_sessions()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None) -> Iterator[subprocess.Popen]:
    """A real Celery worker process on the configured broker, using the test database."""
    env = child_env()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "callcenter",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_session_server() -> Iterator[S3Server]:
    """moto's S3 server (tests/s3.py), started once for the tests that use a bucket."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_session_server: S3Server, settings) -> S3Server:
    """Media in a fresh bucket of a local S3 server for this test: the default storage is
    django-storages' S3Storage on it (MEDIA_STORAGE=s3), through the real boto3 client."""
    bucket = s3_session_server.new_bucket()
    for name, value in bucket.settings().items():
        setattr(settings, name, value)
    return bucket


@pytest.fixture
def fake_elevenlabs(settings, monkeypatch) -> Iterator[FakeElevenLabs]:
    """A fake ElevenLabs API on loopback that settings point at; backoff never waits."""
    with FakeElevenLabs(api_key="test-key") as server:
        settings.ELEVENLABS_BASE_URL = server.url
        settings.ELEVENLABS_API_KEY = "test-key"
        settings.ELEVENLABS_TIMEOUT = 1.0
        monkeypatch.setattr(speech, "_sleep", server.sleeps.append)
        yield server


@pytest.fixture
def fake_twilio(settings, monkeypatch) -> Iterator[FakeTwilio]:
    """A fake Twilio REST API on loopback that settings point at; backoff never waits.

    Requests are checked against Twilio's OpenAPI spec (tests/fakes/specs/), and the test
    fails if any request broke it.
    """
    spec = TwilioSpec.load()
    with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, spec=spec) as server:
        settings.TELEPHONY_BACKEND = "twilio"
        settings.TWILIO_API_BASE_URL = server.url
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_PHONE_NUMBER = "+34910000000"
        settings.TWILIO_TIMEOUT = 1.0
        monkeypatch.setattr(telephony.twilio, "_sleep", server.sleeps.append)
        yield server
        assert server.violations == [], "requests broke Twilio's OpenAPI spec"


@pytest.fixture
def fake_openai(settings) -> Iterator[FakeOpenAI]:
    """A fake OpenAI API on loopback that settings point at."""
    with FakeOpenAI(api_key="test-key") as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        # Generous: on a loaded machine a fake that answers at once must not time out;
        # tests of the timeout set their own.
        settings.MODEL_TIMEOUT = 3.0
        yield server


# --- The partner API ---------------------------------------------------------------------


def _key_client(partner: Partner) -> APIClient:
    """An API client sending a new API key of ``partner``."""
    _api_key, key = create_api_key(partner=partner, name="Tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def api_partner(db: None) -> Partner:
    """A partner onboarded as the API onboards one: a user (``initech``) and a key."""
    return trust(onboard_partner(name="Initech", username="initech", password="initech-pw").partner)


@pytest.fixture
def api_client(api_partner: Partner) -> APIClient:
    """An API client acting for ``api_partner`` with one of its API keys."""
    return _key_client(api_partner)


@pytest.fixture
def other_api_partner(db: None) -> Partner:
    """Another tenant, whose objects ``api_client`` must never see."""
    return trust(
        onboard_partner(name="Umbrella", username="umbrella", password="umbrella-pw").partner
    )


@pytest.fixture
def other_api_client(other_api_partner: Partner) -> APIClient:
    return _key_client(other_api_partner)


@pytest.fixture
def staff_api_client(db: None, django_user_model) -> APIClient:
    """An API client of a staff administrator acting across partners (with a JWT)."""
    user = django_user_model.objects.create_superuser("boss", password="pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client
