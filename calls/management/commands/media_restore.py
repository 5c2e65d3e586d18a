"""``manage.py media_restore --yes ARCHIVE``: make the media storage (the folder or the
bucket of MEDIA_STORAGE) hold exactly the files of an archive of ``media_archive``: missing
files added, changed ones replaced, and files written after the backup deleted. ``-``
reads the archive from standard input. Stop web, worker and beat first."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from callcenter import media


class Command(BaseCommand):
    help = (
        "Restore the media storage (folder or bucket) from a media_archive .tar.gz file "
        "(- for standard input); files not in the archive are deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", help="The archive to restore (.tar.gz), or - for stdin.")
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm: files of the storage that the archive lacks are deleted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["yes"]:
            raise CommandError(
                _(
                    "Restoring replaces the media storage's files and deletes those the "
                    "archive lacks: pass --yes to go on."
                )
            )
        source = options["archive"]
        try:
            if source == "-":
                done = media.restore_archive(default_storage, sys.stdin.buffer)
            else:
                path = Path(source)
                if not path.is_file():
                    raise CommandError(_("No such file: %(files)s.") % {"files": source})
                with path.open("rb") as file:
                    done = media.restore_archive(default_storage, file)
        except (tarfile.TarError, ValueError) as exc:
            raise CommandError(
                _("%(archive)s is not a media archive: %(error)s")
                % {"archive": source, "error": exc}
            ) from exc
        except media.STORAGE_ERRORS as exc:
            raise CommandError(
                _("The media storage could not be restored: %(error)s")
                % {"error": f"{type(exc).__name__}: {exc}"}
            ) from exc
        self.stderr.write(
            _(
                "Restored the media storage from %(archive)s: %(added)s added, %(replaced)s "
                "replaced, %(unchanged)s unchanged, %(deleted)s deleted."
            )
            % {
                "archive": _("standard input") if source == "-" else source,
                "added": done.added,
                "replaced": done.replaced,
                "unchanged": done.unchanged,
                "deleted": done.deleted,
            }
        )
