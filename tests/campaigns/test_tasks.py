from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.tasks import advance_campaigns_task

pytestmark = pytest.mark.django_db


def test_advance_campaigns_task_runs_due_scheduled_campaigns(campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(
        state="scheduled", starts_at=timezone.now() - datetime.timedelta(minutes=1)
    )
    campaign.contacts.create(phone="+34910000001", variables={"first_name": "Ana"})

    assert advance_campaigns_task() == {"started": 1, "completed": 0}
    campaign.refresh_from_db()
    assert campaign.state == "running"
