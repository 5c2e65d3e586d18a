"""Staff are told, on every admin page, when a deployment places no real calls."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
BANNER = "This deployment uses the simulated carrier: no real calls are placed."


def admin_pages() -> list[str]:
    pages = [reverse("admin:index"), reverse("admin:password_change")]
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        pages.append(reverse("admin:app_list", args=[opts.app_label]))
    return sorted(set(pages))


@pytest.mark.parametrize("app_env", ["production", "staging"])
def test_every_admin_page_says_the_deployment_uses_the_simulated_carrier(
    admin_client, client, settings, app_env
) -> None:
    # given a deployment that runs the sandbox carrier (TELEPHONY_BACKEND=sandbox)
    settings.APP_ENV = app_env
    settings.TELEPHONY_BACKEND = "sandbox"

    # when staff open any admin page, the login page included
    shown = {}
    for page in admin_pages():
        response = admin_client.get(page, headers=ENGLISH)
        if response.status_code == 403:
            continue  # pages nobody may open (calls are never added by hand)
        assert response.status_code == 200, page
        shown[page] = BANNER in response.content.decode()
    login = client.get(reverse("admin:login"), headers=ENGLISH).content.decode()

    # then each one says so
    assert len(shown) > 20
    assert [page for page, banner in shown.items() if not banner] == []
    assert BANNER in login


def test_the_banner_shows_in_the_default_language(admin_client, settings) -> None:
    settings.APP_ENV = "production"
    settings.TELEPHONY_BACKEND = "sandbox"

    page = admin_client.get(reverse("admin:index")).content.decode()  # Spanish by default

    assert 'id="simulated-carrier"' in page
    assert "TELEPHONY_BACKEND=sandbox" in page


@pytest.mark.parametrize(
    ("app_env", "backend"),
    [("production", "twilio"), ("development", "sandbox"), ("test", "sandbox")],
)
def test_no_banner_where_real_calls_are_placed_or_none_are_expected(
    admin_client, settings, app_env, backend
) -> None:
    settings.APP_ENV = app_env
    settings.TELEPHONY_BACKEND = backend

    page = admin_client.get(reverse("admin:index"), headers=ENGLISH).content.decode()

    assert BANNER not in page
    assert 'id="simulated-carrier"' not in page
