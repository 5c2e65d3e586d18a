#!/usr/bin/env bash
# Restore a dump made by deploy/backup.sh into the database of DATABASE_URL, replacing
# the tables, sequences and other objects the dump holds (pg_restore -c --if-exists).
#
#   DATABASE_URL=postgresql://... deploy/restore.sh [--yes] FILE
#
# Asks for confirmation on a terminal; --yes skips the question, and without a terminal
# --yes is required. One transaction: on any error the database is left as it was.
# Stop web, worker and beat first (docker compose stop web worker beat).
set -euo pipefail

usage() {
    echo "usage: DATABASE_URL=postgresql://... $0 [--yes] FILE" >&2
    exit 2
}

yes=0
file=""
for arg in "$@"; do
    case "$arg" in
        -y|--yes) yes=1 ;;
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

if [ "$yes" -ne 1 ]; then
    if [ ! -t 0 ]; then
        echo "ERROR: restoring replaces data in the database and there is no terminal to" \
             "confirm on: pass --yes" >&2
        exit 2
    fi
    # The URL without its password, to say which database is about to change.
    target="$(printf '%s' "$DATABASE_URL" | sed -E 's#//([^:/@]*):[^@]*@#//\1:***@#')"
    read -r -p "Replace the contents of $target with $file? Type yes to go on: " answer
    [ "$answer" = "yes" ] || { echo "Aborted: nothing restored." >&2; exit 1; }
fi

pg_restore -c --if-exists --no-owner --no-privileges --single-transaction \
    -d "$DATABASE_URL" "$file"
echo "Restored $file"
