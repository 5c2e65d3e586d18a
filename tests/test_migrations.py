from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import Campaign, Contact, Partner


@pytest.mark.django_db
def test_migrations_match_models() -> None:
    # exits with status 1 (SystemExit) when a model change lacks its migration
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


BEFORE_SPLIT = [("calls", "0011_call_direction_inbound")]
SPLIT = [("calls", "0012_call_answers_apart_from_flags")]


@pytest.mark.django_db(transaction=True)
def test_call_outcome_split_moves_answers_apart_from_flags_and_back() -> None:
    # given a call whose outcome mixes the partner's answers with the platform's flags
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_SPLIT)
    try:
        # Only calls went back: the other apps' tables are as their models are now.
        partner = Partner.objects.create(name="Veterana")
        campaign = Campaign.objects.create(partner=partner, name="A")
        contact = Contact.objects.create(campaign=campaign, phone="+34600000001")
        mixed = {"attending": True, "slot": "lunes", "opted_out": True, "callback_at": None}
        old = executor.loader.project_state(BEFORE_SPLIT).apps
        calls = old.get_model("calls", "Call").objects
        call = calls.create(
            campaign_id=campaign.pk,
            contact_id=contact.pk,
            status="completed",
            attempt=1,
            from_number="+34910000001",
            to_number="+34600000001",
            outcome=mixed,
        )
        untouched = calls.create(
            campaign_id=campaign.pk,
            contact_id=contact.pk,
            status="completed",
            attempt=2,
            from_number="+34910000001",
            to_number="+34600000001",
        )

        # when the outcome is split
        executor = MigrationExecutor(connection)
        executor.migrate(SPLIT)

        # then the answers and the flags each have their field
        new = executor.loader.project_state(SPLIT).apps.get_model("calls", "Call")
        split = new.objects.get(pk=call.pk)
        assert split.answers == {"attending": True, "slot": "lunes"}
        assert split.flags == {"opted_out": True, "callback_at": None}
        assert new.objects.filter(pk=untouched.pk).values("answers", "flags").get() == {
            "answers": {},
            "flags": {},
        }

        # and undone, the outcome is whole again
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE_SPLIT)
        back = executor.loader.project_state(BEFORE_SPLIT).apps.get_model("calls", "Call")
        assert back.objects.get(pk=call.pk).outcome == mixed
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
