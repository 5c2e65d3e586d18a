"""Tokens outlive their reason: a logout, a new password or a deactivation must end a
user's JWTs at once, access and refresh alike, and a refresh token must not live a week."""

from __future__ import annotations

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from campaigns.services import onboard_partner

PASSWORD = "a-long-test-password-1"
NEW_PASSWORD = "another-long-password-2"


@pytest.fixture
def onboarded(db: None):
    return onboard_partner(name="Acme", username="acme", password=PASSWORD)


def log_in(password: str = PASSWORD) -> dict[str, str]:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "acme", "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def api_answer(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/v1/campaigns/").status_code


def refresh_answer(refresh: str) -> int:
    return (
        APIClient()
        .post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
        .status_code
    )


def log_out(refresh: str):
    return APIClient().post(
        "/api/v1/auth/logout/", {"refresh": refresh}, format="json", HTTP_ACCEPT_LANGUAGE="en"
    )


def test_logout_ends_the_access_and_refresh_token_at_once(onboarded):
    # given
    tokens = log_in()
    assert api_answer(tokens["access"]) == 200

    # when
    response = log_out(tokens["refresh"])

    # then
    assert response.status_code == 204
    assert api_answer(tokens["access"]) == 401
    assert refresh_answer(tokens["refresh"]) == 401


def test_logout_ends_the_users_tokens_on_every_device(onboarded):
    # given
    laptop, phone = log_in(), log_in()

    # when
    log_out(laptop["refresh"])

    # then
    assert (api_answer(phone["access"]), refresh_answer(phone["refresh"])) == (401, 401)


def test_access_token_refreshed_before_logout_is_ended_too(onboarded):
    # given
    tokens = log_in()
    access = (
        APIClient()
        .post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
        .json()["access"]
    )

    # when
    log_out(tokens["refresh"])

    # then
    assert api_answer(access) == 401


def test_logging_in_again_after_logout_works(onboarded):
    # given
    assert log_out(log_in()["refresh"]).status_code == 204

    # when
    tokens = log_in()

    # then
    assert api_answer(tokens["access"]) == 200
    assert refresh_answer(tokens["refresh"]) == 200


def test_logout_refuses_an_access_token_or_garbage(onboarded):
    # given
    tokens = log_in()

    # when
    answers = [log_out(tokens["access"]), log_out("not-a-token")]

    # then
    assert [answer.status_code for answer in answers] == [401, 401]
    assert api_answer(tokens["access"]) == 200


def test_logout_with_an_ended_refresh_token_says_why(onboarded):
    # given
    tokens = log_in()
    log_out(tokens["refresh"])

    # when
    again = log_out(tokens["refresh"])

    # then
    assert again.status_code == 401
    assert again.json()["code"] == "token_ended"
    assert again.json()["message"] == "This token was ended by a logout: log in again."


def test_password_change_ends_access_and_refresh_tokens_at_once(onboarded):
    # given
    tokens = log_in()

    # when
    onboarded.user.set_password(NEW_PASSWORD)
    onboarded.user.save()

    # then
    assert api_answer(tokens["access"]) == 401
    assert refresh_answer(tokens["refresh"]) == 401
    assert api_answer(log_in(NEW_PASSWORD)["access"]) == 200


def test_refresh_after_a_password_change_names_the_reason(onboarded):
    # given
    tokens = log_in()
    onboarded.user.set_password(NEW_PASSWORD)
    onboarded.user.save()

    # when
    response = APIClient().post(
        "/api/v1/auth/token/refresh/",
        {"refresh": tokens["refresh"]},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    # then
    assert response.status_code == 401
    assert response.json()["code"] == "password_changed"


def test_password_changed_in_the_admin_ends_the_users_tokens(onboarded, admin_client):
    # given
    tokens = log_in()

    # when
    response = admin_client.post(
        reverse("admin:auth_user_password_change", args=[onboarded.user.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )

    # then
    assert response.status_code == 302
    assert api_answer(tokens["access"]) == 401
    assert refresh_answer(tokens["refresh"]) == 401


def test_deactivated_user_has_access_and_refresh_tokens_refused(onboarded):
    # simplejwt already refuses both (CHECK_USER_IS_ACTIVE); kept so that it stays so.
    # given
    tokens = log_in()

    # when
    get_user_model().objects.filter(pk=onboarded.user.pk).update(is_active=False)

    # then
    assert api_answer(tokens["access"]) == 401
    assert refresh_answer(tokens["refresh"]) == 401


def test_refresh_token_lives_one_day_by_default(onboarded, settings):
    # when
    refresh = log_in()["refresh"]

    # then
    claims = jwt.decode(refresh, settings.SECRET_KEY, algorithms=[settings.ALGORITHM])
    assert claims["exp"] - claims["iat"] == settings.REFRESH_TOKEN_EXPIRE_DAYS * 24 * 3600
    assert settings.REFRESH_TOKEN_EXPIRE_DAYS == 1


def test_schema_documents_the_logout(db):
    # when
    with translation.override("en"):
        schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    # then
    operation = schema["paths"]["/api/v1/auth/logout/"]["post"]
    assert "204" in operation["responses"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema["components"]["schemas"][body.rpartition("/")[2]]["required"] == ["refresh"]
