"""The sandbox carrier's own routes exist only while it is the backend.

URLs are built once per process, so each backend is tried in a process of its own, started
as an operator starts one (callcenter.settings, from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDING = "/sandbox/recordings/RE" + "0" * 32
WEBHOOK = "/twilio/calls/1/answer"
RESOLVE = f"""
import json
import django
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

django.setup()
found = {{}}
for path in ({RECORDING!r}, {RECORDING + ".wav"!r}, {WEBHOOK!r}):
    try:
        found[path] = resolve(path).view_name
    except Resolver404:
        found[path] = None
try:
    found["reverse"] = reverse("calls:sandbox_recording", args=[{RECORDING[-34:]!r}])
except NoReverseMatch:
    found["reverse"] = None
print(json.dumps(found))
"""


def routes(tmp_path: Path, **variables: str) -> dict[str, str | None]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TWILIO_", "TELEPHONY_", "APP_", "DATABASE_", "REDIS_"))
    }
    env.update(DJANGO_SETTINGS_MODULE="callcenter.settings", DATA_DIR=str(tmp_path), **variables)
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.slow
def test_twilio_backend_mounts_no_sandbox_route(tmp_path) -> None:
    found = routes(
        tmp_path,
        TELEPHONY_BACKEND="twilio",
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_AUTH_TOKEN="token",
    )

    assert found[RECORDING] is None
    assert found[RECORDING + ".wav"] is None
    assert found["reverse"] is None
    assert found[WEBHOOK] == "calls:answer"  # Twilio's own webhooks are there


@pytest.mark.parametrize(
    "variables",
    [{"TELEPHONY_BACKEND": "sandbox"}, {}],  # chosen, or the default without credentials
)
@pytest.mark.slow
def test_sandbox_backend_mounts_its_recordings(tmp_path, variables) -> None:
    found = routes(tmp_path, **variables)

    assert found[RECORDING] == found[RECORDING + ".wav"] == "calls:sandbox_recording"
    assert found["reverse"] == RECORDING
    assert found[WEBHOOK] == "calls:answer"
