#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh: the dump into the database of DATABASE_URL,
# replacing the tables, sequences and other objects it holds (pg_restore -c --if-exists),
# and the media archive beside it (FILE without .dump, plus .media.tar.gz) into MEDIA_DIR,
# replacing the folder whole.
#
#   DATABASE_URL=postgresql://... [MEDIA_DIR=/path/to/media] deploy/restore.sh [--yes] FILE
#   ... deploy/restore.sh [--yes] --no-media FILE     # the database alone (the media stays)
#
# MEDIA_DIR defaults to $DATA_DIR/media, as backup.sh's. Asks for confirmation on a
# terminal; --yes skips the question, and without a terminal --yes is required. The media
# is unpacked beside MEDIA_DIR first, the database restored in one transaction (on any
# error both are left as they were), then the unpacked folder takes MEDIA_DIR's place.
# With MEDIA_STORAGE=s3 the archive goes into the bucket instead, after the database, by
# `manage.py media_restore --yes -` (MEDIA_MANAGE, as backup.sh's): objects added, changed
# ones replaced, and those written after the backup deleted; if that step fails, run it
# again alone: $MEDIA_MANAGE media_restore --yes - < ARCHIVE.
# Stop web, worker and beat first (docker compose stop web worker beat).
set -euo pipefail

usage() {
    echo "usage: DATABASE_URL=postgresql://... [MEDIA_DIR=...] $0 [--yes] [--no-media] FILE" >&2
    exit 2
}

yes=0
media=1
file=""
for arg in "$@"; do
    case "$arg" in
        -y|--yes) yes=1 ;;
        --no-media) media=0 ;;
        -h|--help) usage ;;
        -*) echo "ERROR: unknown option $arg" >&2; usage ;;
        *)
            [ -z "$file" ] || { echo "ERROR: one dump file at a time" >&2; usage; }
            file="$arg"
            ;;
    esac
done

[ -n "$file" ] || { echo "ERROR: no dump file given" >&2; usage; }
if [ ! -f "$file" ] || [ ! -r "$file" ]; then
    echo "ERROR: $file: no such readable file" >&2
    exit 2
fi
if [ -z "${DATABASE_URL:-}" ]; then
    echo "ERROR: set DATABASE_URL to the database to restore into" >&2
    exit 2
fi
command -v pg_restore >/dev/null 2>&1 || { echo "ERROR: pg_restore not found" >&2; exit 2; }
if ! pg_restore --list "$file" >/dev/null 2>&1; then
    echo "ERROR: $file is not a pg_dump custom-format archive" >&2
    exit 2
fi

storage="${MEDIA_STORAGE:-filesystem}"
case "$storage" in
    filesystem|s3) ;;
    *) echo "ERROR: MEDIA_STORAGE must be filesystem or s3, not \"$storage\"" >&2; exit 2 ;;
esac
manage="${MEDIA_MANAGE:-python manage.py}"
media_dir="${MEDIA_DIR:-${DATA_DIR:-var}/media}"
[ "$storage" = filesystem ] || media_dir="the bucket ${S3_BUCKET:-of S3_BUCKET}"
archive="${file%.dump}.media.tar.gz"
if [ "$media" -eq 1 ]; then
    if [ ! -f "$archive" ] || [ ! -r "$archive" ]; then
        echo "ERROR: no media archive $archive beside the dump: pass --no-media to restore" \
             "the database alone" >&2
        exit 2
    fi
    if ! tar --list --gzip --file "$archive" >/dev/null 2>&1; then
        echo "ERROR: $archive is not a gzipped tar archive" >&2
        exit 2
    fi
fi

if [ "$yes" -ne 1 ]; then
    if [ ! -t 0 ]; then
        echo "ERROR: restoring replaces data in the database and there is no terminal to" \
             "confirm on: pass --yes" >&2
        exit 2
    fi
    # The URL without its password, to say which database is about to change.
    target="$(printf '%s' "$DATABASE_URL" | sed -E 's#//([^:/@]*):[^@]*@#//\1:***@#')"
    what="$target"
    [ "$media" -eq 0 ] || what="$target and $media_dir"
    read -r -p "Replace the contents of $what with $file? Type yes to go on: " answer
    [ "$answer" = "yes" ] || { echo "Aborted: nothing restored." >&2; exit 1; }
fi

# The media unpacked beside its folder (same file system: the swap is two renames).
media_dir="${media_dir%/}"
incoming="$media_dir.restoring.$$"
outgoing="$media_dir.replaced.$$"
trap 'rm -rf "$incoming"' EXIT
if [ "$media" -eq 1 ] && [ "$storage" = filesystem ]; then
    mkdir -p "$(dirname "$media_dir")"
    rm -rf "$incoming"
    mkdir "$incoming"
    tar --extract --gzip --numeric-owner --file "$archive" --directory "$incoming"
fi

pg_restore -c --if-exists --no-owner --no-privileges --single-transaction \
    -d "$DATABASE_URL" "$file"

if [ "$media" -eq 1 ] && [ "$storage" = s3 ]; then
    # shellcheck disable=SC2086 # MEDIA_MANAGE is a command line: split on purpose.
    if ! $manage media_restore --yes - < "$archive"; then
        echo "ERROR: the database is restored, the bucket is not: run again" \
             "$manage media_restore --yes - < $archive" >&2
        exit 1
    fi
    echo "Restored $file and $archive (into $media_dir)"
elif [ "$media" -eq 1 ]; then
    if [ -e "$media_dir" ]; then
        mv "$media_dir" "$outgoing"
    fi
    mv "$incoming" "$media_dir"
    rm -rf "$outgoing"
    echo "Restored $file and $archive (into $media_dir)"
else
    echo "Restored $file (media left as it was)"
fi
trap - EXIT
