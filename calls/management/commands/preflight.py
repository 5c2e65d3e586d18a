"""``manage.py preflight``: the go-live checks, one line each; exit status 1 on a FAIL."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from callcenter import preflight
from callcenter.preflight import Result, Status


class Command(BaseCommand):
    help = (
        "Check, with the real credentials and before the first campaign, everything going "
        "live needs: database, Redis, worker and beat, APP_URL, Twilio, ElevenLabs and "
        "OpenAI. One line per check, with what to do when it fails; exit status 1 if any "
        "check fails. With --configure-numbers, first point the account's numbers people "
        "ring back at this app's inbound webhooks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=preflight.DEFAULT_TIMEOUT,
            help="Seconds any one request may take before its check fails (default %(default)s).",
        )
        parser.add_argument(
            "--configure-numbers",
            action="store_true",
            help=(
                "Before the checks, point every number of the Twilio account that is "
                "TWILIO_PHONE_NUMBER or a campaign's caller number at APP_URL's inbound "
                "webhooks (voice URL, fallback URL, status callback): one line per number."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            self.stderr.write(_("--timeout must be a positive number of seconds."))
            sys.exit(2)
        results = []
        # The adapters log their retries and adaptations, on stdout with the report: every
        # finding is in a line here, so their logs are kept out while the checks run.
        logging.disable(logging.CRITICAL)
        try:
            if options["configure_numbers"]:
                for result in preflight.configure_numbers(timeout=options["timeout"]):
                    results.append(result)
                    self.stdout.write(self.line(result))
            for result in preflight.run_checks(timeout=options["timeout"]):
                results.append(result)
                self.stdout.write(self.line(result))
        finally:
            logging.disable(logging.NOTSET)
        failed = sum(result.status == Status.FAIL for result in results)
        warned = sum(result.status == Status.WARN for result in results)
        warnings = ngettext("%(count)s warning", "%(count)s warnings", warned) % {"count": warned}
        if failed:
            self.stdout.write(
                _("%(failed)s, %(warnings)s: not ready to go live.")
                % {
                    "failed": ngettext("%(count)s check failed", "%(count)s checks failed", failed)
                    % {"count": failed},
                    "warnings": warnings,
                }
            )
            sys.exit(1)
        if warned:
            self.stdout.write(
                _("No check failed, %(warnings)s to read before going live.")
                % {"warnings": warnings}
            )
        else:
            self.stdout.write(_("Every check passed: ready to go live."))

    def line(self, result: Result) -> str:
        """``MARK  Name: detail → action``, on one line whatever the vendors' messages
        hold. The marks stay as they are in every language, for scripts to read."""
        style = {
            Status.OK: self.style.SUCCESS,
            Status.WARN: self.style.WARNING,
            Status.FAIL: self.style.ERROR,
            Status.SKIP: self.style.NOTICE,
        }[result.status]
        text = f"{result.name}: {result.detail}"
        if result.action and result.status != Status.OK:
            text += f" → {result.action}"
        return f"{style(f'{result.status.value:<4}')}  {_one_line(text)}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
