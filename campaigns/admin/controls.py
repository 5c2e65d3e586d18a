"""The moves staff make on a campaign from its page (start, pause, resume, cancel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns import services
from campaigns.models import Campaign

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


@dataclass(frozen=True)
class CampaignControl:
    """A move staff make on a campaign from the console, through its service: the button
    that offers it, when, and what staff are told after it (or why it was refused)."""

    name: str
    button: StrOrPromise
    applies: Callable[[Campaign], bool]
    service: Callable[..., Campaign]
    done: Callable[[Campaign], str]
    refused: StrOrPromise
    # What staff should know after the move, though it was made.
    warnings: Callable[..., list[str]] = lambda *, campaign: []


def _started(campaign: Campaign) -> str:
    if campaign.state == Campaign.State.SCHEDULED:
        return gettext("“%(name)s” is scheduled: it starts calling at %(start)s.") % {
            "name": campaign.name,
            "start": date_format(timezone.localtime(campaign.starts_at), "DATETIME_FORMAT"),
        }
    return gettext("“%(name)s” started: it is calling.") % {"name": campaign.name}


CAMPAIGN_CONTROLS = {
    control.name: control
    for control in [
        CampaignControl(
            name="start",
            button=_("Start campaign"),
            applies=lambda campaign: campaign.state == Campaign.State.DRAFT,
            service=services.start_campaign,
            done=_started,
            refused=_("“%(name)s” cannot start:"),
            warnings=services.start_warnings,
        ),
        CampaignControl(
            name="pause",
            button=_("Pause campaign"),
            applies=lambda campaign: campaign.can_move_to(Campaign.State.PAUSED),
            service=services.pause_campaign,
            done=lambda campaign: (
                gettext("“%(name)s” is paused: calls going on finish, and no new ones are made.")
                % {"name": campaign.name}
            ),
            refused=_("“%(name)s” cannot be paused:"),
        ),
        CampaignControl(
            name="resume",
            button=_("Resume campaign"),
            applies=lambda campaign: campaign.state == Campaign.State.PAUSED,
            service=services.resume_campaign,
            done=lambda campaign: gettext("“%(name)s” is calling again.") % {"name": campaign.name},
            refused=_("“%(name)s” cannot resume:"),
            warnings=services.start_warnings,
        ),
        CampaignControl(
            name="cancel",
            button=_("Cancel campaign…"),
            applies=lambda campaign: campaign.can_move_to(Campaign.State.CANCELLED),
            service=services.cancel_campaign,
            done=lambda campaign: (
                gettext("“%(name)s” is cancelled: none of its contacts will be called again.")
                % {"name": campaign.name}
            ),
            refused=_("“%(name)s” cannot be cancelled:"),
        ),
    ]
}
