"""Settings are read once per process; these tests execute settings.py afresh in an
environment of their own (and once through manage.py, as an operator meets it)."""

from __future__ import annotations

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "callcenter" / "settings.py"
# Generated, never written down: a key in the repository is one production must refuse.
STRONG_KEY = secrets.token_urlsafe(64)
TWILIO_CREDENTIALS = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token"}


# What a developer's shell may export that would change the settings under test.
CLEARED_PREFIXES = (
    "DATABASE_",
    "TWILIO_",
    "ELEVENLABS_",
    "OPENAI_",
    "REDIS_",
    "APP_",
    "SECURE_",
    "LOG_",
)
CLEARED_NAMES = {
    "SECRET_KEY",
    "DEBUG",
    "MAX_TOKENS",
    "TEMPERATURE",
    "PORT",
    "ALLOWED_HOSTS_EXTRA",
    "HOST",
    "METRICS_TOKEN",
}
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": STRONG_KEY,
    "APP_URL": "https://calls.example.com",
    **TWILIO_CREDENTIALS,
}


def load_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **variables: str) -> dict:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def settings_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **variables: str) -> str:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        load_settings(monkeypatch, tmp_path, **variables)
    return str(excinfo.value)


def test_settings_embedded_default_needs_no_servers(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path)

    assert settings["DATABASES"]["default"]["ENGINE"].endswith("sqlite3")
    assert Path(settings["DATABASES"]["default"]["NAME"]) == tmp_path / "callcenter.sqlite3"
    assert settings["CELERY_BROKER_URL"] == "filesystem://localhost/"
    assert settings["CELERY_BROKER_TRANSPORT"] == "callcenter.broker:Transport"
    assert settings["CACHES"]["default"]["BACKEND"].endswith("FileBasedCache")
    assert settings["TELEPHONY_BACKEND"] == "sandbox"
    assert settings["LANGUAGE_CODE"] == "es"
    assert settings["DEFAULT_CALL_LANGUAGE"] == "es-ES"
    assert (settings["MAX_TOKENS"], settings["TEMPERATURE"]) == (150, 0.7)
    assert settings["ELEVENLABS_DEFAULT_VOICE"] == "Bella"
    assert settings["ELEVENLABS_MAX_RETRIES"] == 3
    assert settings["TWILIO_MAX_CPS"] == 1
    assert settings["DEBUG"] is True


def test_settings_read_supabase_database_url_and_redis(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        DATABASE_URL="postgresql://postgres:s3cret@db.abcd.supabase.co:5432/postgres?sslmode=require",
        REDIS_URL="redis://redis:6379/2",
        REDIS_PASSWORD="p@ss",
        REDIS_CACHE_TTL="60",
    )

    database = settings["DATABASES"]["default"]
    assert database["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "db.abcd.supabase.co",
        5432,
        "postgres",
    )
    assert database["OPTIONS"]["sslmode"] == "require"
    assert settings["CELERY_BROKER_URL"] == "redis://:p%40ss@redis:6379/2"
    assert settings["CACHES"]["default"]["LOCATION"] == "redis://:p%40ss@redis:6379/3"
    assert settings["CACHES"]["default"]["TIMEOUT"] == 60


def test_settings_twilio_credentials_choose_twilio_backend(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_AUTH_TOKEN="token",
        TWILIO_PHONE_NUMBER="+34 910 00 00 00",
    )

    assert settings["TELEPHONY_BACKEND"] == "twilio"
    assert settings["TWILIO_PHONE_NUMBER"] == "+34910000000"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"MAX_TOKENS": "abc"}, "MAX_TOKENS: must be a whole number (got 'abc')"),
        ({"MAX_TOKENS": "0"}, "MAX_TOKENS: must be at least 1"),
        ({"TEMPERATURE": "3"}, "TEMPERATURE: must be at most 2.0 (got '3')"),
        ({"TEMPERATURE": "warm"}, "TEMPERATURE: must be a number"),
        ({"ELEVENLABS_MAX_RETRIES": "-1"}, "ELEVENLABS_MAX_RETRIES: must be at least 0"),
        (
            {"ACCESS_TOKEN_EXPIRE_MINUTES": "soon"},
            "ACCESS_TOKEN_EXPIRE_MINUTES: must be a whole number",
        ),
        ({"TWILIO_MAX_CPS": "0"}, "TWILIO_MAX_CPS: must be at least 1"),
        ({"PORT": "70000"}, "PORT: must be at most 65535"),
        ({"REDIS_CACHE_TTL": "-5"}, "REDIS_CACHE_TTL: must be at least 0"),
        ({"APP_URL": "calls.example.com"}, "APP_URL: must be an absolute http/https URL"),
        (
            {"OPENAI_BASE_URL": "localhost:8080"},
            "OPENAI_BASE_URL: must be an absolute http/https URL",
        ),
        (
            {"ELEVENLABS_BASE_URL": "nope"},
            "ELEVENLABS_BASE_URL: must be an absolute http/https URL",
        ),
        (
            {"TWILIO_API_BASE_URL": "ftp://x"},
            "TWILIO_API_BASE_URL: must be an absolute http/https URL",
        ),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL: must be an absolute redis/rediss URL"),
        (
            {"DATABASE_URL": "mysql://u:p@h/db"},
            "DATABASE_URL: must be a postgres:// or postgresql:// URL",
        ),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL: is not a database URL we understand"),
        ({"ALGORITHM": "none"}, "ALGORITHM: must be one of HS256, HS384, HS512 (got 'none')"),
        ({"APP_ENV": "prod"}, "APP_ENV: must be one of development, test, staging, production"),
        ({"DEBUG": "sure"}, "DEBUG: must be true or false (got 'sure')"),
        ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE: must be an IANA time zone"),
        ({"TELEPHONY_BACKEND": "voip"}, "TELEPHONY_BACKEND: must be one of twilio, sandbox"),
        ({"TELEPHONY_BACKEND": "twilio"}, "TELEPHONY_BACKEND: is twilio but TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "XX123"}, "TWILIO_ACCOUNT_SID: must be 'AC' followed by 32"),
        ({"TWILIO_PHONE_NUMBER": "12345"}, "TWILIO_PHONE_NUMBER: must be a valid number in E.164"),
        ({"DEFAULT_PHONE_REGION": "XX"}, "DEFAULT_PHONE_REGION: must be an ISO 3166 region code"),
        ({"ALLOWED_HOSTS_EXTRA": "*"}, "ALLOWED_HOSTS_EXTRA: must be comma-separated host names"),
        (
            {"ALLOWED_HOSTS_EXTRA": "web,http://calls.example.com,bad host"},
            "ALLOWED_HOSTS_EXTRA: must be comma-separated host names or IP addresses such as "
            "web,10.0.0.5 (got 'http://calls.example.com,bad host')",
        ),
        ({"ALLOWED_HOSTS_EXTRA": "web_1"}, "ALLOWED_HOSTS_EXTRA: must be comma-separated"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be one of json, plain (got 'xml')"),
    ],
)
def test_settings_malformed_variable_names_it(monkeypatch, tmp_path, variables, expected) -> None:
    assert expected in settings_error(monkeypatch, tmp_path, **variables)


def test_settings_allow_extra_hosts_an_ipv6_address_bare_or_bracketed(
    monkeypatch, tmp_path
) -> None:
    # A Kubernetes pod's own address (status.podIP) comes bare; Host headers bracket it.
    settings = load_settings(
        monkeypatch,
        tmp_path,
        ALLOWED_HOSTS_EXTRA="web,10.1.2.3,fd00::7,[::1]",
        SECRET_KEY=STRONG_KEY,
    )

    assert settings["ALLOWED_HOSTS_EXTRA"] == ["web", "10.1.2.3", "[fd00::7]", "[::1]"]
    assert {"web", "10.1.2.3", "[fd00::7]"} <= set(settings["ALLOWED_HOSTS"])


def test_settings_report_every_malformed_variable_at_once(monkeypatch, tmp_path) -> None:
    message = settings_error(monkeypatch, tmp_path, MAX_TOKENS="abc", TEMPERATURE="3", APP_URL="x")

    assert "MAX_TOKENS" in message and "TEMPERATURE" in message and "APP_URL" in message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "SECRET_KEY: must be set to a secret of your own when APP_ENV=production"),
        (
            {"SECRET_KEY": "change-me-in-production"},
            "SECRET_KEY: must be set to a secret of your own",
        ),
        ({"SECRET_KEY": "short-but-mine"}, "SECRET_KEY: must be at least 50 characters"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY: must be at least 50 characters with 5 distinct"),
        (
            {"SECRET_KEY": STRONG_KEY, "DEBUG": "true"},
            "DEBUG: must be false when APP_ENV=production",
        ),
        (
            {"SECRET_KEY": STRONG_KEY, "APP_DEBUG": "1"},
            "DEBUG: must be false when APP_ENV=production",
        ),
    ],
)
def test_settings_production_refuses_weak_secrets_and_debug(
    monkeypatch, tmp_path, variables, expected
) -> None:
    assert expected in settings_error(monkeypatch, tmp_path, APP_ENV="production", **variables)


def test_settings_production_never_echoes_the_secret(monkeypatch, tmp_path) -> None:
    message = settings_error(
        monkeypatch, tmp_path, APP_ENV="production", SECRET_KEY="short-but-mine"
    )

    assert "short-but-mine" not in message


# Every key the project has published, written out here rather than read from settings.py,
# so that a key dropped from its list fails this test.
PUBLISHED_KEYS = [
    "django-insecure-development-key-never-use-in-production",
    "change-me-to-a-long-random-secret",
    "x7Hq-2mZp9Lr4Vt8Nc1Bw6Ks3Jd5Gf0Ya!Ue#Io$Pa%Sd^Fg&Hj*Kl(Zx)Cv_Bn+M",
    "a" * 50 + "bcdef",
    "z" * 50 + "vwxyz",
]


@pytest.mark.parametrize("app_env", ["staging", "production"])
@pytest.mark.parametrize("key", PUBLISHED_KEYS)
def test_settings_refuse_every_secret_key_the_project_published(
    monkeypatch, tmp_path, app_env, key
) -> None:
    variables = {**PRODUCTION, "APP_ENV": app_env, "SECRET_KEY": key}

    message = settings_error(monkeypatch, tmp_path, **variables)

    assert f"SECRET_KEY: must be set to a secret of your own when APP_ENV={app_env}" in message
    assert "published with the project" in message
    assert key not in message


def test_settings_refuse_the_secret_key_of_env_example_in_production(monkeypatch, tmp_path):
    example = env_example_variables()["SECRET_KEY"]

    message = settings_error(monkeypatch, tmp_path, **{**PRODUCTION, "SECRET_KEY": example})

    assert "SECRET_KEY: must be set to a secret of your own" in message


def test_settings_make_run_on_loopback_needs_no_key(monkeypatch, tmp_path) -> None:
    # README's `make run`: nothing set but what the Makefile exports
    settings = load_settings(monkeypatch, tmp_path, PORT="8000", APP_URL="http://localhost:8000")

    assert settings["SECRET_KEY"] == settings["DEVELOPMENT_SECRET_KEY"]
    assert settings["EXPOSED_BY"] == ""
    assert settings["METRICS_OPEN"] is True


def test_settings_development_accepts_a_published_secret_key(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path, SECRET_KEY=PUBLISHED_KEYS[2])

    assert settings["SECRET_KEY"] == PUBLISHED_KEYS[2]


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({}, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: must be set when APP_ENV=production"),
        (
            {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32},
            "TWILIO_AUTH_TOKEN: must be set when APP_ENV=production",
        ),
        ({"TWILIO_AUTH_TOKEN": "token"}, "TWILIO_ACCOUNT_SID: must be set when APP_ENV=production"),
        # .env.example leaves the backend blank: that is not choosing the sandbox.
        ({"TELEPHONY_BACKEND": " "}, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: must be set"),
    ],
)
def test_settings_production_refuses_to_start_without_twilio_credentials(
    monkeypatch, tmp_path, credentials, named
) -> None:
    variables = {key: value for key, value in PRODUCTION.items() if not key.startswith("TWILIO_")}

    message = settings_error(monkeypatch, tmp_path, **variables, **credentials)

    assert named in message
    assert "set TELEPHONY_BACKEND=sandbox" in message


def test_settings_production_runs_the_sandbox_only_when_told_to(monkeypatch, tmp_path) -> None:
    variables = {key: value for key, value in PRODUCTION.items() if not key.startswith("TWILIO_")}

    settings = load_settings(monkeypatch, tmp_path, **variables, TELEPHONY_BACKEND="sandbox")

    assert settings["TELEPHONY_BACKEND"] == "sandbox"


def test_settings_telephony_backend_takes_the_dotted_path_of_a_backend(monkeypatch, tmp_path):
    path = "calls.telephony.sandbox.SandboxBackend"

    settings = load_settings(monkeypatch, tmp_path, TELEPHONY_BACKEND=path)

    assert settings["TELEPHONY_BACKEND"] == path


def test_settings_staging_without_twilio_credentials_runs_the_sandbox(monkeypatch, tmp_path):
    settings = load_settings(
        monkeypatch, tmp_path, APP_ENV="staging", SECRET_KEY=STRONG_KEY, APP_URL="https://s.example"
    )

    assert settings["TELEPHONY_BACKEND"] == "sandbox"


def test_settings_production_with_strong_secret_starts(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        APP_ENV="production",
        SECRET_KEY=STRONG_KEY,
        APP_URL="https://calls.example.com",
        **TWILIO_CREDENTIALS,
    )

    assert settings["DEBUG"] is False
    assert settings["ALLOWED_HOSTS"] == ["calls.example.com"]
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://calls.example.com"]


def test_settings_production_enforces_https(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path, **PRODUCTION)

    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings["SECURE_SSL_REDIRECT"] is True
    assert settings["SECURE_REDIRECT_EXEMPT"] == [r"^health$", r"^metrics$"]
    assert settings["SECURE_HSTS_SECONDS"] == 31536000
    assert settings["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert settings["SECURE_HSTS_PRELOAD"] is False
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["CSRF_COOKIE_SECURE"] is True
    assert settings["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert settings["X_FRAME_OPTIONS"] == "DENY"
    assert settings["SECURE_REFERRER_POLICY"] == "same-origin"
    assert settings["SILENCED_SYSTEM_CHECKS"] == ["security.W021"]


def test_settings_production_https_options_follow_the_environment(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        **PRODUCTION,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_PRELOAD="true",
    )

    assert settings["SECURE_SSL_REDIRECT"] is False
    assert settings["SECURE_HSTS_SECONDS"] == 600
    assert settings["SECURE_HSTS_PRELOAD"] is True
    # The proxy redirects instead, as the operator said: no warning left to hide but that.
    assert settings["SILENCED_SYSTEM_CHECKS"] == ["security.W008"]


def test_settings_development_sets_no_https_only_options(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path, SECURE_SSL_REDIRECT="true")

    assert "SECURE_SSL_REDIRECT" not in settings
    assert "SECURE_PROXY_SSL_HEADER" not in settings
    assert "SESSION_COOKIE_SECURE" not in settings
    assert settings["X_FRAME_OPTIONS"] == "DENY"


# Unset, APP_URL falls back to http://localhost:PORT, which production refuses too.
@pytest.mark.parametrize("app_url", ["http://calls.example.com", ""])
def test_settings_production_refuses_an_app_url_without_https(
    monkeypatch, tmp_path, app_url
) -> None:
    message = settings_error(monkeypatch, tmp_path, **{**PRODUCTION, "APP_URL": app_url})

    assert "APP_URL: must be an https:// URL when APP_ENV=production" in message


def test_settings_staging_accepts_an_http_app_url(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        APP_ENV="staging",
        SECRET_KEY=STRONG_KEY,
        APP_URL="http://staging.internal:8000",
        SECURE_SSL_REDIRECT="false",
    )

    assert settings["ALLOWED_HOSTS"] == ["staging.internal"]
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_settings_allowed_hosts_extra_adds_valid_names(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch, tmp_path, **PRODUCTION, ALLOWED_HOSTS_EXTRA=" web, 10.0.0.5,,[::1],.internal "
    )

    assert settings["ALLOWED_HOSTS"] == [
        "calls.example.com",
        "web",
        "10.0.0.5",
        "[::1]",
        ".internal",
    ]
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://calls.example.com"]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [({}, "plain"), (PRODUCTION, "json"), ({"LOG_FORMAT": "json"}, "json")],
)
def test_settings_log_format_defaults_by_environment(
    monkeypatch, tmp_path, variables, expected
) -> None:
    settings = load_settings(monkeypatch, tmp_path, **variables)

    console = settings["LOGGING"]["handlers"]["console"]
    assert console["formatter"] == expected
    assert console["stream"] == "ext://sys.stdout"
    assert console["filters"] == ["request_context", "mask_phone_numbers"]


@pytest.mark.slow
def test_manage_py_check_deploy_is_clean_in_production(tmp_path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CLEARED_PREFIXES) and name not in CLEARED_NAMES
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(PRODUCTION, DATA_DIR=str(tmp_path))

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.slow
def test_manage_py_stops_with_the_error_and_no_traceback(tmp_path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "MAX_TOKENS": "abc", "TEMPERATURE": "3"}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "MAX_TOKENS: must be a whole number (got 'abc')" in result.stderr
    assert "TEMPERATURE: must be at most 2.0 (got '3')" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_manage_py_refuses_production_without_twilio_credentials(tmp_path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CLEARED_PREFIXES) and name not in CLEARED_NAMES
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(PRODUCTION, DATA_DIR=str(tmp_path), TWILIO_ACCOUNT_SID="", TWILIO_AUTH_TOKEN="")

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: must be set when APP_ENV=production" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def env_example_variables() -> dict[str, str]:
    """Variables of .env.example, commented-out ones included, with their example values."""
    variables = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        name, sep, value = line.partition("=")
        if sep and name.isupper() and name.replace("_", "").isalnum():
            variables[name] = value
    return variables


def test_env_example_lists_every_variable_settings_read() -> None:
    source = SETTINGS.read_text()
    read = set(
        re.findall(
            r'env\.(?:str|int|float|bool|choice|url|raw|mapping)\(\s*"([A-Z][A-Z0-9_]*)"', source
        )
    )
    deploy = "".join(
        (ROOT / "deploy" / name).read_text() for name in ("gunicorn.conf.py", "entrypoint.sh")
    )
    # Reads, not writes: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR for its workers.
    read_by_deploy = set(
        re.findall(r'(?:environ\.get\(|environ\[|_int\()\s*"([A-Z_]+)"(?!\]\s*=[^=])', deploy)
    )
    # Read by the seed_demo command, by docker compose for the bundled PostgreSQL, and by
    # the backup and restore scripts for the media folder and bucket.
    extra = {"DEMO_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "MEDIA_DIR", "MEDIA_MANAGE"}

    assert read, "no variables found: has settings.py changed how it reads them?"
    assert {"WEB_CONCURRENCY", "WAIT_FOR_SERVICES_TIMEOUT"} <= read_by_deploy
    assert read | read_by_deploy | extra == set(env_example_variables())


def test_env_example_values_are_valid_settings(monkeypatch, tmp_path) -> None:
    variables = env_example_variables()
    variables.pop("DATA_DIR")

    settings = load_settings(monkeypatch, tmp_path, **variables)

    assert settings["APP_URL"] == "http://localhost:8000"
    assert settings["TELEPHONY_BACKEND"] == "sandbox"
