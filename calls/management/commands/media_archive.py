"""``manage.py media_archive OUTPUT``: every file of the media storage (the folder or the
bucket of MEDIA_STORAGE) into a gzipped tar archive; ``-`` writes it to standard output.
deploy/backup.sh runs it for a bucket; ``media_restore`` reads the archive back."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from callcenter import media


class Command(BaseCommand):
    help = (
        "Archive every file of the media storage (clips, uploads, exports), folder or "
        "bucket, into a .tar.gz file (- for standard output)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output", help="The archive to write (.tar.gz), or - for stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        output = options["output"]
        try:
            if output == "-":
                count = media.write_archive(default_storage, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                count = _write_file(Path(output))
        except media.STORAGE_ERRORS as exc:
            raise CommandError(
                _("The media storage could not be archived: %(error)s")
                % {"error": f"{type(exc).__name__}: {exc}"}
            ) from exc
        # The count goes to stderr: stdout may be the archive itself.
        self.stderr.write(
            ngettext(
                "Archived %(count)s media file into %(output)s.",
                "Archived %(count)s media files into %(output)s.",
                count,
            )
            % {"count": count, "output": _("standard output") if output == "-" else output}
        )


def _write_file(path: Path) -> int:
    """Write the archive under a temporary name beside ``path``, then rename it: a failed
    archive never looks like one. Owner-only, as it holds uploads and exports."""
    if path.exists():
        raise CommandError(_("%(path)s already exists.") % {"path": path})
    descriptor, partial = tempfile.mkstemp(dir=path.parent or ".", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as file:
            count = media.write_archive(default_storage, file)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return count
