"""A stranger cannot get a server that signs with a key the project published.

The development key, `.env.example`'s and the tests' are in the repository: whoever reaches
a server signing with one forges a superuser's JWT, or the sandbox carrier's callbacks. The
shipped files (compose, `.env.example`, gunicorn's configuration) must never yield one, and
a server reached beyond loopback refuses them however it was started."""

from __future__ import annotations

import datetime
import signal
import socket
import subprocess
import sys
import time

import jwt
import pytest
import requests

from tests.callcenter.test_settings import env_example_variables, settings_error
from tests.deploy.scripts import load_script
from tests.processes import ROOT, child_env, free_port

DEVELOPMENT_KEY = "django-insecure-development-key-never-use-in-production"
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(64))'"


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, as a neighbour would reach it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: only picks the interface
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"HOST": "0.0.0.0"}, "HOST=0.0.0.0"),  # noqa: S104 - the attack
        ({"HOST": "192.0.2.2"}, "HOST=192.0.2.2"),
        ({"HOST": "::"}, "HOST=::"),
        # A tunnel (ngrok) forwards the world to a loopback server: APP_URL says so.
        ({"APP_URL": "https://abc.ngrok.app"}, "APP_URL's host abc.ngrok.app"),
        ({"ALLOWED_HOSTS_EXTRA": "web"}, "ALLOWED_HOSTS_EXTRA's web"),
    ],
)
def test_development_key_is_refused_when_others_reach_the_server(
    monkeypatch, tmp_path, variables, named
) -> None:
    # APP_ENV=development (the default) and no SECRET_KEY: the development key
    message = settings_error(monkeypatch, tmp_path, **variables)

    assert "SECRET_KEY: must be set to a secret of your own when the server is reached " in message
    assert named in message
    assert GENERATE in message


@pytest.mark.parametrize("key", [DEVELOPMENT_KEY, "change-me-to-a-long-random-secret", "short"])
def test_published_or_weak_key_is_refused_on_every_interface(monkeypatch, tmp_path, key) -> None:
    message = settings_error(
        monkeypatch,
        tmp_path,
        APP_ENV="development",
        HOST="0.0.0.0",  # noqa: S104 - the attack
        SECRET_KEY=key,
    )

    assert "SECRET_KEY: must" in message
    assert key not in message


def test_env_example_holds_no_usable_secret_and_no_debug(monkeypatch, tmp_path) -> None:
    variables = env_example_variables()

    # given .env.example as shipped
    assert variables["SECRET_KEY"] == ""
    assert variables["DEBUG"] == "false"
    # when it is copied to a server others reach, or to production
    exposed = settings_error(monkeypatch, tmp_path, **{**variables, "HOST": "0.0.0.0"})  # noqa: S104
    production = settings_error(
        monkeypatch,
        tmp_path,
        **{**variables, "APP_ENV": "production", "APP_URL": "https://calls.example.com"},
    )

    # then neither starts, and each says how to make a key
    for message in (exposed, production):
        assert "SECRET_KEY: must be set to a secret of your own" in message
        assert GENERATE in message


def test_compose_runs_production_and_requires_a_secret_key() -> None:
    compose = load_script("validate_compose_defaults", "validate-compose.py")
    # .env.example, even with APP_ENV=development and DEBUG=true written into it
    variables = {**env_example_variables(), "APP_ENV": "development", "DEBUG": "true"}
    interpolation = compose.Interpolation(variables)

    project = compose.merge_files(
        [interpolation.value(compose.load_compose(ROOT / "docker-compose.yml"))]
    )

    assert "SECRET_KEY" in interpolation.required
    for service in ("migrate", "web", "worker", "beat"):
        environment = project["services"][service]["environment"]
        assert environment["APP_ENV"] == "production", service
        assert environment["DEBUG"] == "false", service


def _wait_for_exit(process: subprocess.Popen, seconds: float) -> int | None:
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        if _wait_for_exit(process, 30) is None:
            process.kill()
            process.wait()


def _development_env(**extra: str) -> dict[str, str]:
    env = child_env(APP_ENV="development", **extra)
    for name in ("SECRET_KEY", "HOST", "APP_URL", "ALLOWED_HOSTS_EXTRA", "WEB_CONCURRENCY"):
        env.pop(name, None)
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_bound_to_every_interface_refuses_the_development_key(tmp_path) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    # the image's command with --bind on the command line, over the configuration's HOST
    command = [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"]
    command += ["--bind", f"0.0.0.0:{port}", "--workers", "1"]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_development_env(), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        returncode = _wait_for_exit(process, 60)
        answered = None
        if returncode is None:
            answered = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code
    finally:
        _stop(process)

    assert returncode not in (None, 0), f"gunicorn served ({answered}): {log.read_text()[-2000:]}"
    text = log.read_text()
    assert "SECRET_KEY: must be set to a secret of your own" in text
    assert "HOST=0.0.0.0" in text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uvicorn_started_by_hand_on_every_interface_answers_only_loopback(
    tmp_path, django_user_model
) -> None:
    neighbour_address = _non_loopback_address()
    if neighbour_address is None:
        pytest.skip("this machine has no address besides loopback")
    superuser = django_user_model.objects.create_superuser("root", password="unguessable-pw")
    port = free_port()
    log = tmp_path / "uvicorn.log"
    # HOST unset: the settings believe loopback, but uvicorn listens everywhere
    command = [sys.executable, "-m", "uvicorn", "callcenter.asgi:application"]
    command += ["--host", "0.0.0.0", "--port", str(port)]  # noqa: S104 - the attack
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_development_env(), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        local = None
        deadline = time.monotonic() + 60
        while local is None and time.monotonic() < deadline and process.poll() is None:
            try:
                local = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
            except requests.ConnectionError:
                time.sleep(0.3)
        assert local is not None and local.status_code == 200, log.read_text()[-2000:]

        # a neighbour forges a superuser's token with the published key
        token = jwt.encode(
            {
                "token_type": "access",
                "user_id": str(superuser.pk),
                "exp": datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5),
                "jti": "forged",
            },
            DEVELOPMENT_KEY,
            algorithm="HS256",
        )
        forged = requests.get(
            f"http://{neighbour_address}:{port}/api/v1/campaigns/",
            headers={"Host": "localhost", "Authorization": f"Bearer {token}"},
            timeout=10,
        )
    finally:
        _stop(process)

    assert forged.status_code == 503
    assert "SECRET_KEY" in log.read_text()
