#!/usr/bin/env bash
# Run a command against real PostgreSQL and Redis, as `.ci/run` starts them:
#
#     bash bench/services.sh .venv/bin/python -m bench.run
#
# Starts a throwaway PostgreSQL 15 cluster (initdb as the postgres user, run as root) and
# a throwaway Redis server on free loopback ports, exports DATABASE_URL and REDIS_URL,
# runs the command, and removes both servers and their temp dirs on exit, keeping the
# command's exit status. With DATABASE_URL already set, the command runs on that database
# (and REDIS_URL as set, or none) and nothing is started.
set -euo pipefail

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[ "$#" -gt 0 ] || die "usage: bash bench/services.sh COMMAND [ARGS...]"

if [ -n "${DATABASE_URL:-}" ]; then
    echo "==> Using DATABASE_URL from the environment"
    exec "$@"
fi

[ "$(id -u)" -eq 0 ] || die "starting PostgreSQL needs root (it runs as the 'postgres' user); or set DATABASE_URL"
# PostgreSQL 15 binaries: /usr/lib/postgresql/15/bin (Debian layout) or /usr/local/bin.
for d in /usr/lib/postgresql/15/bin /usr/local/bin; do
    if [ -x "$d/initdb" ]; then
        case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
    fi
done
# runuser and useradd live in sbin, which a non-login shell may not have on PATH.
PATH="$PATH:/usr/sbin:/sbin"
export PATH
for b in initdb pg_ctl psql redis-server redis-cli runuser python3; do
    command -v "$b" >/dev/null 2>&1 || die "required command '$b' not found (bash .ci/run installs it)"
done

PGTMP=""
REDISTMP=""
PGDATA_DIR=""
REDISPORT=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        echo "==> Stopping PostgreSQL"
        runuser -u postgres -- pg_ctl -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || runuser -u postgres -- pg_ctl -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$REDISTMP" ] && [ -f "$REDISTMP/redis.pid" ]; then
        echo "==> Stopping Redis"
        local rpid
        rpid="$(cat "$REDISTMP/redis.pid" 2>/dev/null)"
        redis-cli -h 127.0.0.1 -p "$REDISPORT" shutdown nosave >/dev/null 2>&1
        if [ -n "$rpid" ]; then
            for _ in $(seq 1 50); do
                kill -0 "$rpid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$rpid" 2>/dev/null && kill -9 "$rpid" 2>/dev/null
        fi
    fi
    [ -n "$PGTMP" ] && rm -rf "$PGTMP"
    [ -n "$REDISTMP" ] && rm -rf "$REDISTMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on 127.0.0.1: the preferred one if free, else any free one.
free_port() {
    python3 - "$1" <<'PY'
import socket, sys
def free(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
print(free(int(sys.argv[1])) or free(0))
PY
}

echo "==> Starting throwaway PostgreSQL"
id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
PGTMP="$(mktemp -d /tmp/callcenter-bench-pg.XXXXXX)"
chown postgres: "$PGTMP"
chmod 700 "$PGTMP"
PGDATA_DIR="$PGTMP/data"
PGPORT="$(free_port 54339)"
# initdb refuses to run as root: run it as postgres, from a directory it can read.
( cd "$PGTMP" && runuser -u postgres -- initdb -D "$PGDATA_DIR" -U postgres \
      --auth-local=trust --auth-host=trust -E UTF8 --locale=C >"$PGTMP/initdb.log" 2>&1 ) \
    || { cat "$PGTMP/initdb.log" >&2; die "initdb failed"; }
# The same durability shortcuts as CI: the figures compare runs of this script, not
# a production server's disk.
( cd "$PGTMP" && runuser -u postgres -- pg_ctl -D "$PGDATA_DIR" -w -t 60 -l "$PGTMP/postgres.log" \
      -o "-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off " \
      start >/dev/null ) \
    || { cat "$PGTMP/postgres.log" >&2; die "PostgreSQL failed to start"; }
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres \
    -c "CREATE ROLE callcenter LOGIN PASSWORD 'callcenter' CREATEDB" \
    -c "CREATE DATABASE callcenter OWNER callcenter"
echo "PostgreSQL listening on 127.0.0.1:$PGPORT"

echo "==> Starting throwaway Redis"
REDISTMP="$(mktemp -d /tmp/callcenter-bench-redis.XXXXXX)"
REDISPORT="$(free_port 63809)"
redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$REDISTMP/redis.pid" --dir "$REDISTMP" \
    --logfile "$REDISTMP/redis.log"
for i in $(seq 1 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$REDISPORT" ping 2>/dev/null || true)" = "PONG" ] && break
    [ "$i" -eq 100 ] && { cat "$REDISTMP/redis.log" >&2 || true; die "Redis did not answer PING"; }
    sleep 0.1
done
echo "Redis listening on 127.0.0.1:$REDISPORT"

export DATABASE_URL="postgres://callcenter:callcenter@127.0.0.1:$PGPORT/callcenter"
export REDIS_URL="redis://127.0.0.1:$REDISPORT/0"
echo "DATABASE_URL=$DATABASE_URL"
echo "REDIS_URL=$REDIS_URL"

# Not exec: the trap must stop the servers when the command ends.
"$@"
