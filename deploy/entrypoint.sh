#!/bin/sh
# Entry point of every container of the image (web, worker, beat, one-off commands):
# waits until PostgreSQL (when DATABASE_URL is set) and Redis (when REDIS_URL is set)
# accept connections, then runs the command. It never migrates: that is the one-off
# `docker compose run --rm migrate`.
#
# WAIT_FOR_SERVICES_TIMEOUT: seconds to wait in all (default 60); past it, exit 1 naming
# the service and its last error.
set -eu

python - <<'PY'
import os
import sys
import time

timeout = os.environ.get("WAIT_FOR_SERVICES_TIMEOUT", "").strip() or "60"
if not timeout.isdigit():
    sys.exit(f"entrypoint: WAIT_FOR_SERVICES_TIMEOUT must be whole seconds (got {timeout!r})")
deadline = time.monotonic() + int(timeout)


def postgres():
    import psycopg

    psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=3).close()


def redis():
    import redis

    password = os.environ.get("REDIS_PASSWORD") or None
    client = redis.Redis.from_url(
        os.environ["REDIS_URL"], password=password, socket_connect_timeout=3, socket_timeout=3
    )
    try:
        client.ping()
    finally:
        client.close()


checks = []
if os.environ.get("DATABASE_URL", "").strip().startswith(("postgres://", "postgresql://")):
    checks.append(("PostgreSQL", postgres))
if os.environ.get("REDIS_URL", "").strip():
    checks.append(("Redis", redis))

for name, check in checks:
    while True:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            if time.monotonic() >= deadline:
                sys.exit(f"entrypoint: {name} still unreachable after {timeout}s: {exc}")
            print(f"entrypoint: waiting for {name} ({type(exc).__name__})", file=sys.stderr)
            time.sleep(1)
        else:
            break
PY

exec "$@"
