"""``manage.py sync_voices``: sync the voice catalogue from ElevenLabs now, and say what
changed. Exits non-zero when ElevenLabs could not be asked or refused."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from voices import services, speech


class Command(BaseCommand):
    help = "Sync the voice catalogue from ElevenLabs now and print what was added or changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            help="Seconds the sync may take, retries included (default 120).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            raise CommandError(_("--timeout must be a positive number of seconds."))
        try:
            result = services.sync_voices(deadline=time.monotonic() + options["timeout"])
        except speech.SpeechNotConfigured as exc:
            raise CommandError(
                _("ElevenLabs is not configured: set ELEVENLABS_API_KEY to sync voices.")
            ) from exc
        except speech.SpeechRejected as exc:
            raise CommandError(
                _("ElevenLabs refused the voice listing (HTTP %(status)s): %(message)s")
                % {"status": exc.status_code, "message": exc.provider_message or exc}
            ) from exc
        except speech.SpeechDeadlineExceeded as exc:
            raise CommandError(
                _("ElevenLabs did not answer within %(seconds)s seconds (%(error)s).")
                % {"seconds": f"{options['timeout']:g}", "error": exc}
            ) from exc
        except speech.SpeechUnavailable as exc:
            raise CommandError(
                _("ElevenLabs is unavailable, try again later (%(error)s).") % {"error": exc}
            ) from exc
        self.stdout.write(
            _(
                "Voices synced from ElevenLabs: %(created)d created, %(updated)d updated, "
                "%(unchanged)d unchanged, %(missing)d no longer listed."
            )
            % result.counts()
        )
        for label, names in (
            (_("Created"), result.created_names),
            (_("Updated"), result.updated_names),
            # Kept: campaigns and rendered clips may still use them.
            (_("No longer listed by ElevenLabs (kept)"), result.missing_names),
        ):
            for name in names:
                self.stdout.write(f"  {label}: {name}")
