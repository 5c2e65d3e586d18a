"""Password guessing: at the admin's login page and at the API's token endpoint, a username
or an address that fails too often is locked out for a while, whatever X-Forwarded-For
it sends, and every refusal says when to try again (docs/security.md, "Logins")."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import translation
from rest_framework.test import APIClient

from campaigns.services import onboard_partner

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password-1"
TOKEN_URL = "/api/v1/auth/token/"
ADMIN_LOGIN_URL = "/admin/login/"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    # The shipped defaults, whatever the developer's shell exports.
    settings.LOGIN_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = 5
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.LOGIN_LOCKOUT_MAX_MINUTES = 24 * 60
    settings.TRUSTED_PROXY_COUNT = 0


@pytest.fixture
def partner_user(db: None):
    return onboard_partner(name="Acme", username="acme", password=PASSWORD).user


@pytest.fixture
def staff_user(db: None):
    return get_user_model().objects.create_superuser("boss", password=PASSWORD)


def token(username: str, password: str, *, address: str = "198.51.100.1", **headers: str):
    """POST to the token endpoint from ``address`` with extra ``headers``."""
    return APIClient().post(
        TOKEN_URL,
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
        headers=headers,
    )


def admin_login(username: str, password: str, *, address: str = "198.51.100.1", **headers):
    return Client().post(
        ADMIN_LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        headers=headers,
    )


# --- The client's address -------------------------------------------------------------------
def test_rotating_forwarded_for_does_not_escape_the_limit(partner_user) -> None:
    # given an attacker who forges a new X-Forwarded-For and tries a new username each time
    answers = [
        token(f"user{n}", "guess", **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(1, 7)
    ]

    # then its one real address is locked at the fifth failure
    assert answers == [401, 401, 401, 401, 429, 429]


def test_forged_forwarded_for_does_not_escape_the_general_api_budget(partner_user, settings):
    # given a budget of three requests a minute for an anonymous address
    settings.API_THROTTLE_RATE = "3/minute"

    # when it sends four, each with a forged X-Forwarded-For
    answers = [
        token("acme", PASSWORD, **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(1, 5)
    ]

    # then the fourth is over its budget
    assert answers == [200, 200, 200, 429]


def test_behind_one_proxy_the_right_most_address_counts_and_the_forged_part_is_ignored(
    partner_user, settings
) -> None:
    # given one proxy in front, which appends the address it was connected from
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"

    # when a client forges the left part of the header differently each time
    answers = [
        token(
            f"user{n}", "guess", address=proxy, **{"X-Forwarded-For": f"1.2.3.{n}, 203.0.113.9"}
        ).status_code
        for n in range(1, 6)
    ]
    # and another client comes through the same proxy
    other = token("acme", PASSWORD, address=proxy, **{"X-Forwarded-For": "203.0.113.50"})

    # then the first is locked by its real address, and the other client is not
    assert answers == [401, 401, 401, 401, 429]
    assert other.status_code == 200


def test_client_address_takes_the_nth_address_from_the_right(rf, settings) -> None:
    from callcenter.logins import client_address

    request = rf.get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.0.0.1"
    )

    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request) == "203.0.113.9"
    # A header shorter than the proxies: its left-most address, never the whole header.
    settings.TRUSTED_PROXY_COUNT = 5
    assert client_address(request) == "6.6.6.6"
    # Ports and brackets are not part of the address; nonsense falls back to the peer.
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(rf.get("/", HTTP_X_FORWARDED_FOR="[2001:db8::1]:443")) == "2001:db8::1"
    assert client_address(rf.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9:8443")) == "203.0.113.9"
    assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="x")) == (
        "10.0.0.2"
    )


def test_one_proxy_is_trusted_by_default_only_where_the_deployment_puts_one(
    monkeypatch, tmp_path
) -> None:
    from tests.callcenter.test_settings import PRODUCTION, load_settings

    monkeypatch.delenv("TRUSTED_PROXY_COUNT", raising=False)

    # Staging and production stand behind the TLS-terminating proxy docs/deploy.md requires.
    assert load_settings(monkeypatch, tmp_path, **PRODUCTION)["TRUSTED_PROXY_COUNT"] == 1
    assert load_settings(monkeypatch, tmp_path, APP_ENV="development")["TRUSTED_PROXY_COUNT"] == 0


def test_lockout_settings_refuse_a_ceiling_below_the_first_lock(monkeypatch, tmp_path) -> None:
    from tests.callcenter.test_settings import settings_error

    message = settings_error(
        monkeypatch, tmp_path, LOGIN_LOCKOUT_MINUTES="30", LOGIN_LOCKOUT_MAX_MINUTES="10"
    )

    assert "LOGIN_LOCKOUT_MAX_MINUTES: must be at least LOGIN_LOCKOUT_MINUTES (30)" in message


# --- Per username and per address -------------------------------------------------------------
def test_username_guessed_from_many_addresses_is_locked(partner_user) -> None:
    # given five failures at one username, each from its own address
    answers = [token("acme", "guess", address=f"203.0.113.{n}").status_code for n in range(1, 6)]

    # when the right password comes from yet another address
    right = token("acme", PASSWORD, address="198.51.100.77")

    # then the username stays locked
    assert answers == [401, 401, 401, 401, 429]
    assert right.status_code == 429


def test_address_trying_many_usernames_is_locked(partner_user) -> None:
    answers = [token(f"user{n}", "guess").status_code for n in range(1, 6)]

    right = token("acme", PASSWORD)

    assert answers == [401, 401, 401, 401, 429]
    assert right.status_code == 429


def test_overlong_username_is_refused_before_it_is_counted(partner_user) -> None:
    response = token("a" * 300, "guess")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "username"


# --- The refusals -----------------------------------------------------------------------------
def test_token_endpoint_answers_429_with_retry_after_and_the_wait(partner_user) -> None:
    for _ in range(4):
        token("acme", "guess")

    response = token("acme", "guess", **{"Accept-Language": "en"})

    assert response.status_code == 429
    assert 15 * 60 - 5 <= int(response["Retry-After"]) <= 15 * 60
    body = response.json()
    assert body["code"] == "login_locked"
    assert body["message"] == "Too many failed logins. Try again in 15\xa0minutes."


def test_admin_login_locked_after_failures_shows_the_wait(staff_user) -> None:
    # given four failures
    answers = [admin_login("boss", "guess").status_code for _ in range(4)]

    # when the fifth fails, and then the right password is tried
    fifth = admin_login("boss", "guess", **{"Accept-Language": "en"})
    right = admin_login("boss", PASSWORD, **{"Accept-Language": "en"})

    # then both are refused with the time to wait, in the visitor's language
    assert answers == [200, 200, 200, 200]
    for response in (fifth, right):
        assert response.status_code == 429
        assert 15 * 60 - 5 <= int(response["Retry-After"]) <= 15 * 60
        assert "Try again in 15\xa0minutes." in response.content.decode()
    assert "_auth_user_id" not in right.client.session
    spanish = admin_login("boss", "guess")
    with translation.override("es"):
        from callcenter.logins import lockout_message

        assert lockout_message(15 * 60) in spanish.content.decode()


def test_admin_login_lock_holds_under_the_asgi_server(staff_user) -> None:
    from tests.calls.test_middleware import asgi

    def attempt(client):
        return client.post(
            ADMIN_LOGIN_URL,
            {"username": "boss", "password": "guess"},
            headers={"Accept-Language": "en"},
        )

    for _ in range(4):
        asgi(attempt)
    response = asgi(attempt)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Try again in 15\xa0minutes." in response.content.decode()


# --- Back-off, success and unlocking ----------------------------------------------------------
def test_guessing_on_during_a_lock_doubles_it(partner_user) -> None:
    answers = [token("acme", "guess").status_code for _ in range(10)]

    tenth = token("acme", "guess")
    fifteenth = [token("acme", "guess") for _ in range(5)][-1]

    assert answers[4:] == [429] * 6
    # The tenth failure doubled it (30 minutes), the fifteenth again (an hour).
    assert 30 * 60 - 5 <= int(tenth["Retry-After"]) <= 30 * 60
    assert 60 * 60 - 5 <= int(fifteenth["Retry-After"]) <= 60 * 60


def test_lock_never_exceeds_its_ceiling(partner_user, settings) -> None:
    settings.LOGIN_LOCKOUT_MAX_MINUTES = 20

    responses = [token("acme", "guess") for _ in range(20)]

    assert int(responses[-1]["Retry-After"]) <= 20 * 60


def test_success_forgets_the_users_failures(partner_user) -> None:
    # given four failures, then the right password
    before = [token("acme", "guess").status_code for _ in range(4)]
    success = token("acme", PASSWORD)

    # then the count starts again: four more failures are not locked, the fifth is
    after = [token("acme", "guess").status_code for _ in range(5)]

    assert before == [401] * 4
    assert success.status_code == 200
    assert after == [401, 401, 401, 401, 429]


@pytest.mark.parametrize("where", ["token", "admin"])
def test_own_login_does_not_wipe_guesses_at_others(partner_user, staff_user, where) -> None:
    # given an attacker with an account of its own (staff "boss" for the admin's login page,
    # partner "acme" for the API), and four guesses at another's username from many addresses
    get_user_model().objects.create_user("victim", password="the-victims-password")
    guesses = [token("victim", "guess", address=f"203.0.113.{n}").status_code for n in range(1, 5)]

    # when the attacker logs in as itself from one of those addresses, and guesses again
    if where == "token":
        own = token("acme", PASSWORD, address="203.0.113.1")
    else:
        own = admin_login("boss", PASSWORD, address="203.0.113.1")
    fifth = token("victim", "guess", address="203.0.113.1")

    # then the victim's username is locked all the same
    assert guesses == [401] * 4
    assert own.status_code == (200 if where == "token" else 302)
    assert fifth.status_code == 429


def test_staff_unlock_a_username_and_an_address(partner_user) -> None:
    # given a username locked, and an address locked by tries at other usernames
    for n in range(5):
        token("acme", "guess", address=f"203.0.113.{n}")
    for n in range(5):
        token(f"user{n}", "guess", address="198.51.100.9")
    assert token("acme", PASSWORD, address="198.51.100.77").status_code == 429
    assert token("acme", PASSWORD, address="198.51.100.9").status_code == 429

    # when staff unlock them
    call_command("axes_reset_username", "acme", stdout=io.StringIO())
    call_command("axes_reset_ip", "198.51.100.9", stdout=io.StringIO())

    # then both log in again
    assert token("acme", PASSWORD, address="198.51.100.77").status_code == 200
    assert token("acme", PASSWORD, address="198.51.100.9").status_code == 200
