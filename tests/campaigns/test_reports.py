"""campaigns.reports: the seam through which calls' reports reach campaigns' pages."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

import calls.reports
from campaigns import reports


def test_registered_reports_are_the_ones_calls_registers_when_ready() -> None:
    assert reports.registered_reports() is calls.reports


def test_registered_reports_refuse_loudly_when_no_app_registered_them(monkeypatch) -> None:
    # given
    monkeypatch.setattr(reports, "_reports", None)

    # when / then
    with pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"):
        reports.with_progress(None)  # type: ignore[arg-type]
