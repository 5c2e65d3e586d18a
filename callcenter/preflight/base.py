"""What a go-live check is: its verdict (Status), its Finding and Result, the bounds the
checks share, and the registry that runs them in order (`_check`, CHECKS)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _

from campaigns.models import Campaign

# Seconds any one request of a check may take: a vendor that does not answer fails its
# line within this, never hangs the command.
DEFAULT_TIMEOUT = 10.0
# Beat's heartbeat ticks every 30 s: older than this, the worker or beat is behind...
HEARTBEAT_LATE_SECONDS = 90
# ...and older than this (the beat container's own health check), they are not running.
HEARTBEAT_DEAD_SECONDS = 600
# Below this share of the plan's characters, the ElevenLabs line warns.
LOW_CHARACTERS_SHARE = 0.1
# Campaigns that may still dial: their caller numbers must work.
DIALLING_STATES = (
    Campaign.State.DRAFT,
    Campaign.State.SCHEDULED,
    Campaign.State.RUNNING,
    Campaign.State.PAUSED,
)
# Campaign names shown for one caller number before "and N more".
NAMES_SHOWN = 3


class Status(enum.StrEnum):
    """A check's verdict. FAIL makes the command exit 1; WARN works but degrades calls
    or needs a look; SKIP could not be checked because of a line above."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Finding:
    """What a check found: its `status`, what it saw (`detail`) and, unless OK, what to
    do (`action`). Texts are translated."""

    status: Status
    detail: str
    action: str = ""


@dataclass(frozen=True)
class Result(Finding):
    """One check's line: a finding and the `name` of what was checked."""

    name: str = ""


Check = Callable[..., Result]
# Every check, in the order it is registered (and printed) by `_check`.
CHECKS: list[Check] = []


def _check(label: str) -> Callable[[Callable[..., Finding]], Check]:
    """Register a check named `label` (translated when it runs): it takes the seconds any
    one of its requests may take and returns a Finding, which becomes its Result. A
    check that breaks fails its own line, naming why, and never hides the lines after it."""

    def register(function: Callable[..., Finding]) -> Check:
        @functools.wraps(function)
        def check(*, timeout: float) -> Result:
            try:
                finding = function(timeout=timeout)
            # Whatever broke, the line says it and the other checks still run.
            except Exception as exc:  # noqa: BLE001
                finding = Finding(
                    Status.FAIL,
                    _("The check itself failed: %(error)s")
                    % {"error": f"{type(exc).__name__}: {exc}"},
                    _("Fix what the error names (a line above may say more), then run again."),
                )
            return Result(finding.status, finding.detail, finding.action, name=_(label))

        CHECKS.append(check)
        return check

    return register
