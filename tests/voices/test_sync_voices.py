"""``manage.py sync_voices`` against the fake ElevenLabs: what it prints, and how it fails."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from tests.fakes.elevenlabs import GEORGE_ID, SARAH_ID, FakeElevenLabs
from tests.processes import child_env
from voices.models import Voice

ROOT = Path(__file__).resolve().parents[2]


def sync(*arguments: str) -> str:
    out = io.StringIO()
    with translation.override("en"):
        call_command("sync_voices", *arguments, stdout=out)
    return out.getvalue()


def refusal(*arguments: str) -> str:
    with translation.override("en"), pytest.raises(CommandError) as excinfo:
        call_command("sync_voices", *arguments, stdout=io.StringIO())
    return str(excinfo.value)


@pytest.mark.django_db
def test_sync_voices_prints_what_it_created_updated_and_no_longer_finds(fake_elevenlabs):
    # given an empty catalogue
    first = sync()

    assert "2 created, 0 updated, 0 unchanged, 0 no longer listed" in first
    assert f"Created: Sarah ({SARAH_ID})" in first
    assert f"Created: George ({GEORGE_ID})" in first
    assert Voice.objects.count() == 2

    # when the account renames one voice and drops the other
    fake_elevenlabs.update_voice(SARAH_ID, name="Sara")
    fake_elevenlabs.remove_voice(GEORGE_ID)
    second = sync()

    # then
    assert "0 created, 1 updated, 0 unchanged, 1 no longer listed" in second
    assert f"Updated: Sara ({SARAH_ID})" in second
    assert f"No longer listed by ElevenLabs (kept): George ({GEORGE_ID})" in second
    assert Voice.objects.count() == 2  # kept: campaigns and clips may use it


@pytest.mark.django_db
def test_sync_voices_fails_naming_a_refused_key(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_API_KEY = "revoked"

    message = refusal()

    assert message == "ElevenLabs refused the voice listing (HTTP 401): Invalid API key"
    assert not Voice.objects.exists()


@pytest.mark.django_db
def test_sync_voices_fails_when_elevenlabs_stays_down(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_MAX_RETRIES = 1
    fake_elevenlabs.fail_next(503, times=2)

    message = refusal()

    assert message.startswith("ElevenLabs is unavailable, try again later")
    assert "HTTP 503" in message
    assert len(fake_elevenlabs.requests) == 2  # retried once, as ELEVENLABS_MAX_RETRIES says


@pytest.mark.django_db
def test_sync_voices_gives_up_at_its_timeout(fake_elevenlabs, settings) -> None:
    settings.ELEVENLABS_TIMEOUT = 1.0
    fake_elevenlabs.delay = 10.0

    started = time.monotonic()
    message = refusal("--timeout", "2")

    assert time.monotonic() - started < 4.0
    assert message.startswith("ElevenLabs did not answer within 2 seconds")


@pytest.mark.django_db
def test_sync_voices_without_a_key_says_which_variable(settings) -> None:
    settings.ELEVENLABS_API_KEY = ""

    assert "set ELEVENLABS_API_KEY" in refusal()


def test_sync_voices_refuses_a_timeout_that_is_not_positive() -> None:
    assert "--timeout must be a positive number" in refusal("--timeout", "0")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_manage_py_sync_voices_exits_non_zero_on_failure_and_zero_on_success() -> None:
    with FakeElevenLabs(api_key="right-key") as server:

        def run(key: str) -> subprocess.CompletedProcess:
            env = child_env(
                CALLCENTER_LOCAL_FAKES="1",  # the key below reaches the process
                ELEVENLABS_API_KEY=key,
                ELEVENLABS_BASE_URL=server.url,
                ELEVENLABS_MAX_RETRIES="0",
                OPENAI_API_KEY="",
                TWILIO_ACCOUNT_SID="",
                TWILIO_AUTH_TOKEN="",
            )
            return subprocess.run(
                [sys.executable, "manage.py", "sync_voices"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        refused = run("wrong-key")
        synced = run("right-key")

    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr
    assert synced.returncode == 0, synced.stderr
    assert f"({SARAH_ID})" in synced.stdout
    assert Voice.objects.count() == 2
