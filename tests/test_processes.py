"""The helpers that run the tests' own processes."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from tests.processes import end_other_sessions


@pytest.mark.django_db
def test_end_other_sessions_ends_another_session_of_ours() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("sessions are PostgreSQL's")
    other = psycopg.connect(**connection.get_connection_params())
    try:
        end_other_sessions()

        with pytest.raises(psycopg.OperationalError):
            other.execute("SELECT 1")
    finally:
        other.close()
