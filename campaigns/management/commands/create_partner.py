"""``manage.py create_partner NAME --user USERNAME``: a partner, its first user and key."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from campaigns.services import onboard_partner


class Command(BaseCommand):
    help = "Create a partner with its first user and print its API key (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The partner's name.")
        parser.add_argument("--user", required=True, help="Username of its first user.")
        parser.add_argument("--email", default="", help="That user's email address.")
        parser.add_argument(
            "--password",
            help="That user's password; left out, a strong one is generated and printed.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            onboarding = onboard_partner(
                name=options["name"],
                username=options["user"],
                email=options["email"],
                password=options["password"],
            )
        except ValidationError as error:
            problems = [
                f"{field}: {message}"
                for field, messages in error.message_dict.items()
                for message in messages
            ]
            raise CommandError("\n".join(problems)) from error
        self.stdout.write(
            _("Partner “%(partner)s” (id %(id)s) created with user “%(user)s”.")
            % {
                "partner": onboarding.partner.name,
                "id": onboarding.partner.pk,
                "user": onboarding.user.get_username(),
            }
        )
        if onboarding.password:
            self.stdout.write(_("Password: %(password)s") % {"password": onboarding.password})
        self.stdout.write(_("API key (shown only now): %(key)s") % {"key": onboarding.api_key})
