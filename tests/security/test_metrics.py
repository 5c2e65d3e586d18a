"""A stranger cannot read the product's metrics.

/metrics (and the worker's metrics port) told anyone how many calls run, how they fail and
which views are slow. Outside a laptop they answer only Prometheus, which sends
``Authorization: Bearer <METRICS_TOKEN>``; without a token set they answer no one."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from callcenter.celery import _serve_metrics
from tests.callcenter.test_settings import PRODUCTION, load_settings, settings_error
from tests.processes import ROOT, free_port

TOKEN = secrets.token_urlsafe(32)
PROMETHEUS = ROOT / "deploy" / "prometheus"


@pytest.fixture
def production_metrics(settings):
    settings.METRICS_OPEN = False
    settings.METRICS_TOKEN = TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_stranger_cannot_scrape_metrics_but_prometheus_can(
    client, production_metrics, authorization
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    stranger = client.get("/metrics", headers=headers)
    prometheus = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert stranger.status_code == 404
    assert b"django_http_requests" not in stranger.content
    assert prometheus.status_code == 200
    assert b"django_http_requests" in prometheus.content


@pytest.mark.django_db
def test_without_a_token_metrics_are_off_in_production(client, settings) -> None:
    settings.METRICS_OPEN = False
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize(
    "variables",
    [
        PRODUCTION,
        {**PRODUCTION, "APP_ENV": "staging"},
        {"HOST": "0.0.0.0", "SECRET_KEY": TOKEN * 2},  # noqa: S104 - the exposure
    ],
)
def test_metrics_are_closed_wherever_others_reach_the_server(
    monkeypatch, tmp_path, variables
) -> None:
    settings = load_settings(monkeypatch, tmp_path, **variables)

    assert settings["METRICS_OPEN"] is False


def test_a_guessable_metrics_token_is_refused(monkeypatch, tmp_path) -> None:
    message = settings_error(monkeypatch, tmp_path, **PRODUCTION, METRICS_TOKEN="metrics")

    assert "METRICS_TOKEN: must be at least 32 characters" in message
    assert "metrics'" not in message


@pytest.mark.django_db(transaction=True)
def test_stranger_cannot_scrape_the_worker_metrics_port(settings) -> None:
    settings.WORKER_METRICS_PORT = free_port()
    settings.METRICS_OPEN = False
    settings.METRICS_TOKEN = TOKEN
    server = _serve_metrics()
    url = f"http://127.0.0.1:{settings.WORKER_METRICS_PORT}/metrics"
    try:
        stranger = requests.get(url, timeout=10)
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
        prometheus = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    finally:
        server.shutdown()
        server.server_close()

    assert (stranger.status_code, wrong.status_code) == (404, 404)
    assert prometheus.status_code == 200
    assert "python_info" in prometheus.text or "callcenter_" in prometheus.text


def test_prometheus_scrape_config_sends_the_token(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    # both jobs the alert rules expect, each sending the token from a file
    assert set(jobs) == {"callcenter", "callcenter-worker"}
    for job in jobs.values():
        assert job["authorization"]["type"] == "Bearer"
        assert job["authorization"]["credentials_file"]
        assert "credentials" not in job["authorization"]

    if shutil.which("promtool"):
        # promtool wants the token file to exist: a copy pointing at one of the test's
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        text = (PROMETHEUS / "prometheus.yml").read_text()
        for job in jobs.values():
            text = text.replace(job["authorization"]["credentials_file"], str(token_file))
        (tmp_path / "prometheus.yml").write_text(text)
        shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
        result = subprocess.run(
            ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
