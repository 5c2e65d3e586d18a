#!/usr/bin/env bash
# Backup round trip (run by .ci/run against its throwaway PostgreSQL): migrate and fill a
# scratch database and its media folder (a speech clip, an import's file), back both up
# with deploy/backup.sh, restore them into a second, fresh database with deploy/restore.sh,
# and compare every table of the public schema (row count and an md5 of its rows in a
# fixed order), every sequence, and every media file (SHA-256: a file added after the
# backup is gone, one deleted or changed is back as it was). Then restore over a changed
# database and media and compare again. Then the same round trip with the media in an S3
# bucket (MEDIA_STORAGE=s3) of moto's S3 server, started from the venv on a free loopback
# port: the clip and the upload byte for byte, an object added after the backup gone, a
# deleted one back. Exits 1 on any difference.
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
s3_db="callcenter_backup_s3_$$"
s3_restored_db="callcenter_backup_s3_restored_$$"
work="$(mktemp -d /tmp/callcenter-backup-test.XXXXXX)"
moto_pid=""
cleanup() {
    local rc=$?
    set +e
    for db in "$source_db" "$restored_db" "$s3_db" "$s3_restored_db"; do
        admin_sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
    [ -z "$moto_pid" ] || { kill "$moto_pid"; wait "$moto_pid"; } 2>/dev/null
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
# The media: a rendered clip and an uploaded import file, as the app stores them.
STORE_MEDIA='
from django.core.files.base import ContentFile

from campaigns.models import Campaign, ContactImport
from voices.models import SpeechClip, Voice

campaign = Campaign.objects.get(name="Demo: recordatorio de citas")
voice = Voice.objects.create(provider_voice_id="backupvoice0001", name="Copia")
clip = SpeechClip(key="f" * 64, text="Hola.", voice=voice, model_id="m", output_format="mp3")
clip.audio.save("clip.mp3", ContentFile(bytes(range(256)) * 64), save=False)
clip.status = SpeechClip.Status.READY
clip.save()
upload = ContactImport(campaign=campaign, file_name="contactos.csv")
upload.file.save("contactos.csv", ContentFile("phone\n+34600000098\n".encode()))
'
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
DATABASE_URL="$SOURCE_URL" "$PYTHON" manage.py shell --verbosity 0 -c "$STORE_MEDIA"
snapshot "$SOURCE_URL" > "$work/source.txt"
tables="$(grep -c '^table ' "$work/source.txt" || true)"
filled="$(grep '^table ' "$work/source.txt" | awk -F'|' '$2 > 0' | wc -l)"
rows="$(grep '^table ' "$work/source.txt" | awk -F'|' '{ n += $2 } END { print n + 0 }')"
[ "$filled" -ge 5 ] || fail "only $filled of $tables tables hold rows: the test data did not load"
echo "$tables tables ($filled with rows, $rows rows)"

media="$DATA_DIR/media"
# Every media file's path and SHA-256, in a fixed order.
media_sums() {
    (cd "$media" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
media_sums > "$work/media.txt"
files="$(wc -l < "$work/media.txt")"
[ "$files" -ge 2 ] || fail "only $files media files: the clip and the upload were not stored"
echo "$files media files"

compare_media() {
    media_sums > "$work/media-restored.txt"
    if ! diff -u "$work/media.txt" "$work/media-restored.txt"; then
        fail "the restored media differs from the one backed up ($1)"
    fi
    # every file the restored database names is there
    local name
    while IFS= read -r name; do
        [ -f "$media/$name" ] || fail "the restored database names $name, not in the media ($1)"
    done < <(psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname "$RESTORED_URL" -c \
        "SELECT audio FROM voices_speechclip WHERE audio <> ''
         UNION ALL SELECT file FROM campaigns_contactimport WHERE file <> ''")
}

# The media changes after a backup: a file added, one deleted, one changed.
change_media() {
    echo "after the backup" > "$media/clips/added-$1.mp3"
    find "$media/clips" -name 'clip*.mp3' -delete
    find "$media/imports" -type f -exec sh -c 'echo changed >> "$1"' _ {} \;
}

log "deploy/backup.sh"
backup="$(DATABASE_URL="$SOURCE_URL" BACKUP_DIR="$work/backups" deploy/backup.sh)"
dump="$(sed -n 1p <<<"$backup")"
archive="$(sed -n 2p <<<"$backup")"
[[ "$(basename "$dump")" =~ ^(callcenter-[0-9]{8}-[0-9]{6})\.dump$ ]] || fail "unexpected file name $dump"
[ "$(basename "$archive")" = "${BASH_REMATCH[1]}.media.tar.gz" ] \
    || fail "the media archive $archive is not named after the dump"
[ -s "$dump" ] || fail "backup.sh printed $dump but wrote nothing there"
[ -s "$archive" ] || fail "backup.sh printed $archive but wrote nothing there"
echo "$dump ($(wc -c < "$dump") bytes), $archive ($(wc -c < "$archive") bytes)"
change_media 1

log "deploy/restore.sh refuses without a file, and without --yes when no terminal asks"
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh </dev/null 2>/dev/null; then
    fail "restore.sh without a file succeeded"
fi
admin_sql "CREATE DATABASE \"$restored_db\""
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh "$dump" </dev/null 2>/dev/null; then
    fail "restore.sh without --yes and without a terminal succeeded"
fi
[ -z "$(snapshot "$RESTORED_URL")" ] || fail "a refused restore.sh changed the database"
[ -f "$media/clips/added-1.mp3" ] || fail "a refused restore.sh changed the media"

log "deploy/restore.sh --yes into the fresh database $restored_db"
DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$dump" </dev/null
compare "fresh database"
compare_media "fresh database"
echo "identical: every table's row count and md5, every sequence, every media file"

log "deploy/restore.sh --yes over changed data"
psql -X -q -v ON_ERROR_STOP=1 --dbname "$RESTORED_URL" \
    -c "UPDATE campaigns_partner SET name = name || ' (changed)'" \
    -c "DELETE FROM campaigns_contact WHERE phone = '+34600000099'"
change_media 2
DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$dump" </dev/null
compare "restore over changed data"
compare_media "restore over changed data"
[ -z "$(find "$DATA_DIR" -maxdepth 1 -name 'media.*')" ] || fail "restore.sh left folders beside the media"
echo "identical again"

log "deploy/restore.sh --no-media restores the database alone"
change_media 3
cp "$work/media.txt" "$work/media-backed-up.txt"
media_sums > "$work/media.txt"
DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes --no-media "$dump" </dev/null
compare "database alone"
media_sums | diff -u "$work/media.txt" - || fail "restore.sh --no-media changed the media"
mv "$work/media-backed-up.txt" "$work/media.txt"
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$work/backups/elsewhere.dump" \
        </dev/null 2>/dev/null; then
    fail "restore.sh of a missing dump succeeded"
fi
cp "$dump" "$work/alone.dump"
if DATABASE_URL="$RESTORED_URL" deploy/restore.sh --yes "$work/alone.dump" </dev/null 2>/dev/null; then
    fail "restore.sh of a dump without its media archive succeeded without --no-media"
fi

log "S3: moto's server, a bucket, and a scratch database $s3_db with its media there"
port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
moto_pid=$!
export MEDIA_STORAGE=s3 S3_BUCKET="callcenter-backup-$$" S3_ENDPOINT_URL="http://127.0.0.1:$port" \
    S3_REGION=us-east-1 S3_ACCESS_KEY_ID=moto S3_SECRET_ACCESS_KEY=moto S3_ADDRESSING_STYLE=path
export MEDIA_MANAGE="$PYTHON manage.py"
# The bucket's keys and each object's SHA-256, in a fixed order (or "create" the bucket).
bucket() {
    "$PYTHON" - "$@" <<'PY'
import hashlib
import os
import sys
import time

import boto3

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT_URL"],
    region_name=os.environ["S3_REGION"],
    aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
)
name = os.environ["S3_BUCKET"]
if sys.argv[1:] == ["create"]:
    for _ in range(100):  # moto's server takes a moment to listen
        try:
            s3.create_bucket(Bucket=name)
            break
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    else:
        sys.exit("moto's S3 server did not start")
elif sys.argv[1:] == ["sums"]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", ()):
            body = s3.get_object(Bucket=name, Key=item["Key"])["Body"].read()
            print(hashlib.sha256(body).hexdigest(), item["Key"])
elif sys.argv[1] == "put":
    s3.put_object(Bucket=name, Key=sys.argv[2], Body=sys.argv[3].encode())
elif sys.argv[1] == "delete":
    s3.delete_object(Bucket=name, Key=sys.argv[2])
PY
}
bucket create
S3_URL="$(database_url "$s3_db")"
S3_RESTORED_URL="$(database_url "$s3_restored_db")"
admin_sql "CREATE DATABASE \"$s3_db\""
DATABASE_URL="$S3_URL" "$PYTHON" manage.py migrate --noinput --verbosity 0
DATABASE_URL="$S3_URL" "$PYTHON" manage.py seed_demo >/dev/null
DATABASE_URL="$S3_URL" "$PYTHON" manage.py shell --verbosity 0 -c "$STORE_MEDIA"
bucket sums > "$work/bucket.txt"
[ "$(wc -l < "$work/bucket.txt")" -ge 2 ] || fail "the clip and the upload are not in the bucket"
grep -q ' clips/' "$work/bucket.txt" || fail "no clip in the bucket"
grep -q ' imports/' "$work/bucket.txt" || fail "no upload in the bucket"
cat "$work/bucket.txt"

log "deploy/backup.sh with MEDIA_STORAGE=s3"
backup="$(DATABASE_URL="$S3_URL" BACKUP_DIR="$work/s3-backups" deploy/backup.sh)"
dump="$(sed -n 1p <<<"$backup")"
archive="$(sed -n 2p <<<"$backup")"
[ -s "$archive" ] || fail "backup.sh printed $archive but wrote nothing there"
echo "$dump, $archive ($(wc -c < "$archive") bytes)"

log "deploy/restore.sh --yes after the bucket changed: an object added, one deleted, one changed"
clip_key="$(awk '/ clips\// { print $2; exit }' "$work/bucket.txt")"
upload_key="$(awk '/ imports\// { print $2; exit }' "$work/bucket.txt")"
bucket put "clips/added-after-the-backup.mp3" "after"
bucket delete "$clip_key"
bucket put "$upload_key" "changed"
admin_sql "CREATE DATABASE \"$s3_restored_db\""
DATABASE_URL="$S3_RESTORED_URL" deploy/restore.sh --yes "$dump" </dev/null
bucket sums | diff -u "$work/bucket.txt" - || fail "the restored bucket differs from the one backed up"
while IFS= read -r name; do
    grep -q " $name\$" "$work/bucket.txt" \
        || fail "the restored database names $name, not in the bucket"
done < <(psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname "$S3_RESTORED_URL" -c \
    "SELECT audio FROM voices_speechclip WHERE audio <> ''
     UNION ALL SELECT file FROM campaigns_contactimport WHERE file <> ''")
echo "identical: every object of the bucket, the clip and the upload byte for byte"

log "Backup round trip passed"
