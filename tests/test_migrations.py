from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_migrations_match_models() -> None:
    # exits with status 1 (SystemExit) when a model change lacks its migration
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
