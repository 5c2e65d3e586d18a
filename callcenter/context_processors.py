"""What every page (the admin's above all) tells staff about this deployment."""

from __future__ import annotations

from django.http import HttpRequest

from calls.telephony import is_simulated_deployment


def deployment(request: HttpRequest) -> dict[str, bool]:
    """``simulated_carrier``: staging or production runs on the sandbox carrier, so no real
    call is placed (callcenter/templates/admin/base_site.html shows a banner)."""
    return {"simulated_carrier": is_simulated_deployment()}
