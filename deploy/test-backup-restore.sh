#!/usr/bin/env bash
# Backup round trip (run by .ci/run against its throwaway PostgreSQL): migrate and fill a
# scratch database, back it up with deploy/backup.sh, restore the dump into a second, fresh
# database with deploy/restore.sh, and compare every table of the public schema (row
# count and an md5 of its rows in a fixed order) and every sequence. Then restore over a
# changed database and compare again. Exits 1 on any difference.
#
#   DATABASE_URL=postgresql://callcenter:...@127.0.0.1:54329/callcenter deploy/test-backup-restore.sh
#
# The role of DATABASE_URL needs CREATEDB; its own database is not touched. The scratch
# databases and files are removed at exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ -z "${DATABASE_URL:-}" ]; then
    echo "ERROR: set DATABASE_URL (a role with CREATEDB on a throwaway server)" >&2
    exit 2
fi

log() { printf -- '--> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
admin_sql() { psql -X -q -v ON_ERROR_STOP=1 --dbname "$DATABASE_URL" -c "$1"; }

# The URL of another database on the same server, with the same credentials.
database_url() {
    "$PYTHON" - "$DATABASE_URL" "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit

parts = urlsplit(sys.argv[1])
print(urlunsplit(parts._replace(path="/" + sys.argv[2])))
PY
}

source_db="callcenter_backup_source_$$"
restored_db="callcenter_backup_restored_$$"
work="$(mktemp -d /tmp/callcenter-backup-test.XXXXXX)"
cleanup() {
    local rc=$?
    set +e
    for db in "$source_db" "$restored_db"; do
        admin_sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

SOURCE_URL="$(database_url "$source_db")"
RESTORED_URL="$(database_url "$restored_db")"

# Row count and md5 of every table of the public schema, then every sequence's position.
snapshot() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname "$1" <<'SQL'
SELECT format(
    'SELECT %L, count(*), md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM public.%I AS t',
    'table ' || tablename, E'\n', '', tablename
)
FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename
\gexec
SELECT 'sequence ' || sequencename, coalesce(last_value::text, 'unused')
FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename;
SQL
}

compare() {
    snapshot "$RESTORED_URL" > "$work/restored.txt"
    if ! diff -u "$work/source.txt" "$work/restored.txt"; then
        fail "the restored database differs from the one backed up ($1)"
    fi
}

log "Scratch database $source_db: migrate, demo data and a few awkward rows"
admin_sql "CREATE DATABASE \"$source_db\""
export DATA_DIR="$work/data"
DATABASE_URL="$SOURCE_URL" "$PYTHON" manage.py migrate --noinput --verbosity 0
DATABASE_URL="$SOURCE_URL" "$PYTHON" manage.py seed_demo >/dev/null
DATABASE_URL="$SOURCE_URL" "$PYTHON" manage.py shell --verbosity 0 -c '
from campaigns.models import Campaign, Partner
from campaigns.services import add_contact

for name in ("O'"'"'Reilly \"quoted\"", "Línea\nnueva\\barra", "Émoji 📞", "Borrado"):
    Partner.objects.create(name=name)
# A deleted row leaves the sequence ahead of the highest id: the restore must keep that.
Partner.objects.filter(name="Borrado").delete()
campaign = Campaign.objects.get(name="Demo: recordatorio de citas")
add_contact(
    campaign=campaign,
    phone="+34600000099",
    variables={"first_name": "Ñandú", "note": None, "tags": ["a", "b"]},
)
'
snapshot "$SOURCE_URL" > "$work/source.txt"
tables="$(grep -c '^table ' "$work/source.txt" || true)"
filled="$(grep '^table ' "$work/source.txt" | awk -F'|' '$2 > 0' | wc -l)"
rows="$(grep '^table ' "$work/source.txt" | awk -F'|' '{ n += $2 } END { print n + 0 }')"
[ "$filled" -ge 5 ] || fail "only $filled of $tables tables hold rows: the test data did not load"
echo "$tables tables ($filled with rows, $rows rows)"

log "deploy/backup.sh"
dump="$(DATABASE_URL="$SOURCE_URL" BACKUP_DIR="$work/backups" deploy/backup.sh)"
[[ "$(basename "$dump")" =~ ^callcenter-[0-9]{8}-[0-9]{6}\.dump$ ]] || fail "unexpected file name $dump"
[ -s "$dump" ] || fail "backup.sh printed $dump but wrote nothing there"
echo "$dump ($(wc -c < "$dump") bytes)"

log "deploy/restore.sh refuses without a file, and without --yes when no terminal asks"
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh </dev/null 2>/dev/null; then
    fail "restore.sh without a file succeeded"
fi
admin_sql "CREATE DATABASE \"$restored_db\""
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh "$dump" </dev/null 2>/dev/null; then
    fail "restore.sh without --yes and without a terminal succeeded"
fi
[ -z "$(snapshot "$RESTORED_URL")" ] || fail "a refused restore.sh changed the database"

log "deploy/restore.sh --yes into the fresh database $restored_db"
DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$dump" </dev/null
compare "fresh database"
echo "identical: every table's row count and md5, every sequence"

log "deploy/restore.sh --yes over changed data"
psql -X -q -v ON_ERROR_STOP=1 --dbname "$RESTORED_URL" \
    -c "UPDATE campaigns_partner SET name = name || ' (changed)'" \
    -c "DELETE FROM campaigns_contact WHERE phone = '+34600000099'"
DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$dump" </dev/null
compare "restore over changed data"
echo "identical again"

log "Backup round trip passed"
