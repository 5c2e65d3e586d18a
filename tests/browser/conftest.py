"""Browser tests: Playwright driving Debian's Chromium (headless) against a live server.

They run where /usr/bin/chromium is (CI installs it) and are skipped elsewhere. Playwright's
own browser downloads are never used. Screenshots of the key pages go to var/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Group

from tests.processes import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "browser-pw"
# Long enough for a page of the admin on a loaded CI machine; short enough to fail fast.
TIMEOUT_MS = 15_000
# Every module here carries it: no server, worker or database is set up for nothing.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium; CI has it)",
)


@pytest.fixture(scope="package", autouse=True)
def _leave_the_database_as_plain_transactional_tests_do(
    django_db_setup: None, django_db_blocker
) -> Iterator[None]:
    """The tests here flush with serialized rollback, which leaves the database empty
    (no content types, no permissions) for the transactional tests of other packages that
    follow; a plain flush recreates those. So does this, once the last test here is done."""
    yield
    from django.core.management.sql import emit_post_migrate_signal

    with django_db_blocker.unblock():
        emit_post_migrate_signal(verbosity=0, interactive=False, db="default")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the package's tests (each test gets its own context)."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an asyncio loop running on this thread while it is open,
    # and Django refuses database work where a loop runs (SynchronousOnlyOperation). The
    # loop only drives the browser: the tests' own queries are as synchronous as ever.
    # While that loop runs, Django also hands this thread the connections of the loop's
    # context, new objects without the test database's serialized contents: carried over,
    # or serialized_rollback would restore nothing (no groups) after the first test here.
    from django.db import connections

    serialized = {
        alias: connections[alias]._test_serialized_contents
        for alias in connections
        if hasattr(connections[alias], "_test_serialized_contents")
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            for alias, contents in serialized.items():
                connections[alias]._test_serialized_contents = contents
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (its own cookies), in English, the size of a laptop screen."""
    context = browser.new_context(locale="en-US", viewport={"width": 1440, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """Saves the whole page as var/screenshots/<name>.png for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


def log_in(tab: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Logs in through the admin's login form and waits for the admin index."""
    tab.goto(f"{base_url}/admin/login/?next=/admin/")
    tab.fill("#id_username", username)
    tab.fill("#id_password", password)
    tab.click("input[type=submit]")
    tab.wait_for_url(re.compile(r"/admin/$"))


@pytest.fixture
def staff_user(transactional_db, django_user_model):
    """A superuser: the staff member who runs the platform."""
    return django_user_model.objects.create_superuser(
        "staff", email="staff@example.com", password=PASSWORD
    )


@pytest.fixture
def role_user(transactional_db, django_user_model) -> Callable[[str], object]:
    """A staff user in the role group named ``role`` ("viewer", "operator",
    "administrator"); the test is skipped while no migration has created that group."""

    def make(role: str):
        group = Group.objects.filter(name=role).first()
        if group is None:
            pytest.skip(f'no group "{role}" in the database: the roles migration is missing')
        user = django_user_model.objects.create_user(role, password=PASSWORD, is_staff=True)
        user.groups.add(group)
        return user

    return make
