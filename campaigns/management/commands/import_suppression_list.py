"""``manage.py import_suppression_list --list NAME --refreshed YYYY-MM-DD FILE [FILE ...]``:
load a national suppression list's copy from files in place (plain or gzip), replacing the
list's live copy once every file is read."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from campaigns.models import SuppressionCopy, SuppressionList
from campaigns.suppression import import_files


class Command(BaseCommand):
    help = (
        "Import a national suppression list's copy (Lista Robinson, the US Do Not Call "
        "Registry...) from files, plain or gzip-compressed; it replaces the live copy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, help="The operator's files.")
        parser.add_argument("--list", required=True, help="The list's name (as in the admin).")
        parser.add_argument(
            "--refreshed",
            required=True,
            type=datetime.date.fromisoformat,
            help="The date of the operator's download (YYYY-MM-DD), not today's.",
        )
        parser.add_argument("--by", default="", help="Username of the staff member importing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            suppression_list = SuppressionList.objects.get(name=options["list"])
        except SuppressionList.DoesNotExist as error:
            names = ", ".join(SuppressionList.objects.values_list("name", flat=True))
            raise CommandError(
                _("No list is named “%(name)s”; the lists are: %(names)s.")
                % {"name": options["list"], "names": names or "-"}
            ) from error
        missing = [str(path) for path in options["files"] if not path.is_file()]
        if missing:
            raise CommandError(_("No such file: %(files)s.") % {"files": ", ".join(missing)})
        by = None
        if options["by"]:
            by = get_user_model().objects.filter(username=options["by"]).first()
            if by is None:
                raise CommandError(_("No user is named “%(name)s”.") % {"name": options["by"]})

        def progress(copy: SuppressionCopy) -> None:
            self.stdout.write(
                _("%(lines)s lines read, %(entries)s entries, %(bad)s bad")
                % {"lines": copy.lines_read, "entries": copy.entry_count, "bad": copy.bad_lines}
            )

        copy = import_files(
            suppression_list=suppression_list,
            refreshed_at=options["refreshed"],
            paths=options["files"],
            by=by,
            on_progress=progress,
        )
        for file_name, line, value, reason in copy.bad_samples:
            where = f"{file_name}:{line}" if file_name else str(line)
            self.stderr.write(
                _("line %(where)s: “%(value)s”: %(reason)s")
                % {"where": where, "value": value, "reason": reason}
            )
        if copy.bad_lines > len(copy.bad_samples):
            self.stderr.write(
                _("… and %(count)s more bad lines.")
                % {"count": copy.bad_lines - len(copy.bad_samples)}
            )
        if copy.state == SuppressionCopy.State.FAILED:
            raise CommandError(
                _("Nothing imported: %(reason)s The live copy is unchanged.")
                % {"reason": copy.failure_reason}
            )
        self.stdout.write(
            _(
                "%(list)s: copy of %(date)s is live with %(entries)s entries (%(lines)s lines, "
                "%(bad)s bad, %(repeated)s repeated)."
            )
            % {
                "list": suppression_list.name,
                "date": copy.refreshed_at.isoformat(),
                "entries": copy.entry_count,
                "lines": copy.lines_read,
                "bad": copy.bad_lines,
                "repeated": copy.duplicate_lines,
            }
        )
