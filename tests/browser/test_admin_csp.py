"""In Chromium, the admin's Content-Security-Policy stops a script injected into a page and
lets the admin's own scripts run (tests/security/test_admin_csp.py checks the header)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in, needs_chromium

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_script_injected_into_the_overview_does_not_run(
    live_server, page, staff_user, campaign
) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    log_in(page, live_server.url, "staff")

    # given a page whose HTML carries a script that escaped escaping
    def inject(route) -> None:
        response = route.fetch()
        html = response.text().replace("</body>", "<script>window.injected = 1</script></body>")
        route.fulfill(response=response, body=html)

    page.route("**/admin/", inject)
    page.goto(f"{live_server.url}/admin/")

    # then it does not run, and it is the one thing the policy refused
    assert page.evaluate("window.injected") is None
    assert len(violations) == 1, violations
    # the admin's own scripts still ran: its theme and sidebar scripts, and the page's nonce
    page.unroute("**/admin/")
    violations.clear()
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.locator("#toggle-nav-sidebar").is_visible()
    assert violations == []


def test_api_docs_run_under_the_policy(live_server, page, staff_user) -> None:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    log_in(page, live_server.url, "staff")

    page.goto(f"{live_server.url}/api/docs/")

    # Swagger UI's scripts come from this site: it draws the API's operations
    page.locator(".opblock").first.wait_for()
    assert violations == []
