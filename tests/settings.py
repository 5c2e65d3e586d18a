"""Test settings: the project's settings, read from the same environment, plus a few
test-only choices. With DATABASE_URL and REDIS_URL set (as .ci/run does) the tests run on
PostgreSQL and Redis; without them, on the embedded default in a throwaway DATA_DIR."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("APP_ENV", "test")
# A throwaway data folder per test run, shared with the worker processes tests start
# (they inherit DATA_DIR); the process that made it removes it.
if "DATA_DIR" not in os.environ:
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="callcenter-test-")
    atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)
# Tests never reach a real vendor, whatever the developer's shell exports. (A server that
# a benchmark starts against local fakes keeps the keys it was given for them.)
if not os.environ.get("CALLCENTER_LOCAL_FAKES"):
    for _name in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "ELEVENLABS_API_KEY",
        "OPENAI_API_KEY",
    ):
        os.environ.pop(_name, None)

from callcenter.settings import *  # noqa: F403
from callcenter.settings import DATA_DIR, DATABASES, STATIC_ROOT

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that worker processes started by tests see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

# Worker processes started by tests (tests/conftest.py) use the test database.
if os.environ.get("CALLCENTER_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["CALLCENTER_TEST_DATABASE_NAME"]

# WhiteNoise warns about a missing static root; tests serve static files from finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
