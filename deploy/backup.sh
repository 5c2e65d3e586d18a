#!/usr/bin/env bash
# Back up the database of DATABASE_URL (the bundled PostgreSQL, Supabase or any other)
# to backups/callcenter-YYYYmmdd-HHMMSS.dump (UTC) and print the file's path.
#
#   DATABASE_URL=postgresql://... deploy/backup.sh
#
# pg_dump's custom format (-F c), without owners and privileges, so the dump restores
# into a database owned by any role (deploy/restore.sh). BACKUP_DIR changes the folder.
# pg_dump must be as new as the server (PostgreSQL 15 here; check a managed server's).
set -euo pipefail

if [ -z "${DATABASE_URL:-}" ]; then
    echo "ERROR: set DATABASE_URL to the database to back up" >&2
    exit 2
fi
command -v pg_dump >/dev/null 2>&1 || { echo "ERROR: pg_dump not found" >&2; exit 2; }

dir="${BACKUP_DIR:-backups}"
# The dump holds every phone number and secret of the database: its owner only.
umask 077
mkdir -p "$dir"
file="$dir/callcenter-$(date -u +%Y%m%d-%H%M%S).dump"
if [ -e "$file" ]; then
    echo "ERROR: $file already exists" >&2
    exit 1
fi

# Written under a temporary name, so a failed dump never looks like a backup.
partial="$file.partial"
trap 'rm -f "$partial"' EXIT
pg_dump -F c --no-owner --no-privileges --file "$partial" --dbname "$DATABASE_URL"
mv "$partial" "$file"
trap - EXIT
echo "$file"
