#!/usr/bin/env bash
# Back up the database of DATABASE_URL (the bundled PostgreSQL, Supabase or any other) and
# the media folder (speech clips, contact import files: MEDIA_ROOT) side by side:
#
#   backups/callcenter-YYYYmmdd-HHMMSS.dump           the database (UTC time)
#   backups/callcenter-YYYYmmdd-HHMMSS.media.tar.gz   the media, same time
#
#   DATABASE_URL=postgresql://... [MEDIA_DIR=/path/to/media] deploy/backup.sh
#
# and print both paths, the dump's first. pg_dump's custom format (-F c), without owners
# and privileges, so the dump restores into a database owned by any role
# (deploy/restore.sh). BACKUP_DIR changes the folder. MEDIA_DIR is the media folder as the
# host sees it (default: $DATA_DIR/media, as the settings' MEDIA_ROOT; with Docker Compose
# the "media" volume's mountpoint); BACKUP_MEDIA=no backs up the database alone.
# With MEDIA_STORAGE=s3 the media is the bucket's objects, archived by the app's own
# `manage.py media_archive -` (through the Django storage API, with the S3_* variables):
# MEDIA_MANAGE is how to run manage.py (default "python manage.py"; with Compose
# "docker compose run --rm -T web python manage.py"). Either way the archive is a gzipped
# tar of the media's files, which restore.sh puts back into a folder or a bucket.
# The media is archived after the dump, so every file the dump refers to is in it.
# pg_dump must be as new as the server (PostgreSQL 15 here; check a managed server's).
set -euo pipefail

if [ -z "${DATABASE_URL:-}" ]; then
    echo "ERROR: set DATABASE_URL to the database to back up" >&2
    exit 2
fi
command -v pg_dump >/dev/null 2>&1 || { echo "ERROR: pg_dump not found" >&2; exit 2; }

media="${BACKUP_MEDIA:-yes}"
case "$media" in
    yes|no) ;;
    *) echo "ERROR: BACKUP_MEDIA must be yes or no, not \"$media\"" >&2; exit 2 ;;
esac
storage="${MEDIA_STORAGE:-filesystem}"
case "$storage" in
    filesystem|s3) ;;
    *) echo "ERROR: MEDIA_STORAGE must be filesystem or s3, not \"$storage\"" >&2; exit 2 ;;
esac
manage="${MEDIA_MANAGE:-python manage.py}"
media_dir="${MEDIA_DIR:-${DATA_DIR:-var}/media}"
if [ "$media" = yes ] && [ "$storage" = filesystem ] && [ ! -d "$media_dir" ]; then
    echo "ERROR: media folder $media_dir not found: set MEDIA_DIR to MEDIA_ROOT as this" \
         "host sees it, or BACKUP_MEDIA=no to back up the database alone" >&2
    exit 2
fi

dir="${BACKUP_DIR:-backups}"
# The dump and the media hold every phone number and secret: their owner only.
umask 077
mkdir -p "$dir"
stamp="callcenter-$(date -u +%Y%m%d-%H%M%S)"
file="$dir/$stamp.dump"
archive="$dir/$stamp.media.tar.gz"
for existing in "$file" "$archive"; do
    if [ -e "$existing" ]; then
        echo "ERROR: $existing already exists" >&2
        exit 1
    fi
done

# Written under temporary names, so a failed backup never looks like one.
partial="$file.partial"
partial_archive="$archive.partial"
trap 'rm -f "$partial" "$partial_archive"' EXIT
pg_dump -F c --no-owner --no-privileges --file "$partial" --dbname "$DATABASE_URL"
if [ "$media" = yes ] && [ "$storage" = s3 ]; then
    # shellcheck disable=SC2086 # MEDIA_MANAGE is a command line: split on purpose.
    if ! $manage media_archive - > "$partial_archive"; then
        echo "ERROR: the bucket could not be archived ($manage media_archive)" >&2
        exit 1
    fi
elif [ "$media" = yes ]; then
    # Numeric owners, so the containers' user (uid 10001) owns the files again after a
    # restore. Exit status 1 is GNU tar's "a file changed while being read" (a clip being
    # written): the archive is whole, that one file as tar read it.
    status=0
    tar --create --gzip --numeric-owner --file "$partial_archive" \
        --directory "$media_dir" . || status=$?
    if [ "$status" -gt 1 ]; then
        echo "ERROR: tar could not archive $media_dir (exit $status)" >&2
        exit 1
    fi
fi
mv "$partial" "$file"
[ "$media" = no ] || mv "$partial_archive" "$archive"
trap - EXIT
echo "$file"
[ "$media" = no ] || echo "$archive"
