"""``manage.py sandbox_call_in``: ring one of our numbers through the sandbox carrier.

    manage.py sandbox_call_in --contact 12 [--persona opt_out] [--now]
    manage.py sandbox_call_in --from +34600000009 --to +34910000000 [--persona silent] [--now]

A contact rings its campaign's number back (the backend's ``ring_back``); ``--from`` and
``--to`` ring any number from any other. The call goes through the web server's inbound
webhooks at APP_URL, signed, as Twilio would deliver it. Queued for the Celery worker, or
with ``--now`` played here (the web server must be up at APP_URL).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from calls import telephony
from calls.telephony.sandbox.personas import CALLER_PERSONAS
from campaigns.models import Contact, SandboxPersona


class Command(BaseCommand):
    help = "Ring one of our numbers through the sandbox carrier, as a contact calling back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contact", type=int, help="The id of the contact who calls back.")
        parser.add_argument("--from", dest="from_", help="The caller's number (E.164).")
        parser.add_argument("--to", help="Our number that is rung (E.164).")
        parser.add_argument(
            "--persona",
            choices=CALLER_PERSONAS,
            help="Who rings: by default the contact's sandbox_persona, else interested.",
        )
        parser.add_argument(
            "--now", action="store_true", help="Play the call here instead of queueing it."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        carrier = telephony.backend()
        if not carrier.rings_our_numbers:
            raise CommandError(_("The sandbox carrier is off: TELEPHONY_BACKEND is not sandbox."))
        contact_id, caller, number = options["contact"], options["from_"], options["to"]
        if (contact_id is None) == (caller is None and number is None):
            raise CommandError(_("Give either --contact, or --from and --to."))
        queue = not options["now"]
        try:
            if contact_id is not None:
                contact = Contact.objects.select_related("campaign").filter(pk=contact_id).first()
                if contact is None:
                    raise CommandError(_("No contact has the id %(id)s.") % {"id": contact_id})
                call = carrier.ring_back(contact=contact, persona=options["persona"], queue=queue)
            else:
                if not (caller and number):
                    raise CommandError(_("Give both --from and --to."))
                call = carrier.ring_in(
                    from_=caller,
                    to=number,
                    persona=options["persona"] or SandboxPersona.INTERESTED,
                    queue=queue,
                )
        except ValueError as error:
            raise CommandError(str(error)) from error
        if queue:
            self.stdout.write(_("Call %(sid)s queued for the worker.") % {"sid": call.sid})
            return
        played = carrier.play(call.sid)
        self.stdout.write(
            _("Call %(sid)s played: %(status)s after %(seconds)s s.")
            % {"sid": call.sid, "status": played.status, "seconds": played.duration}
        )
