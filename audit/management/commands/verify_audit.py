"""manage.py verify_audit: walk the audit trail's hash chain and report where it breaks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit.models import AuditHead
from audit.services import verify


class Command(BaseCommand):
    help = (
        "Check every entry of the audit trail against its keyed hash and the one before it; "
        "exits 1 naming each entry where the chain breaks (an edit, insertion or deletion "
        "made in the database)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count, problems = verify()
        for problem in problems:
            self.stderr.write(_("entry %(seq)s: %(message)s") % problem.__dict__)
        if problems:
            raise CommandError(
                ngettext(
                    "The audit trail has been altered: %(count)s problem in %(entries)s entries.",
                    "The audit trail has been altered: %(count)s problems in %(entries)s entries.",
                    len(problems),
                )
                % {"count": len(problems), "entries": count}
            )
        head = AuditHead.objects.filter(pk=1).first()
        self.stdout.write(
            _("The audit trail is intact: %(entries)s entries, last hash %(hash)s.")
            % {"entries": count, "hash": head.hash if head and head.hash else "-"}
        )
