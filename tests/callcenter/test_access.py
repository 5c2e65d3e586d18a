"""Who the partner API lets in, and as whom: JWT, API keys, partners and staff."""

from __future__ import annotations

import datetime

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from campaigns.models import Campaign, Partner, PartnerApiKey, PartnerMember
from campaigns.services import onboard_partner

PASSWORD = "a-long-test-password-1"


@pytest.fixture
def onboarded(db: None):
    return onboard_partner(name="Acme", username="acme", password=PASSWORD)


@pytest.fixture
def staff_client(db: None) -> APIClient:
    user = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    client = APIClient()
    client.force_authenticate(user)
    return client


def with_access_scope(onboarded):
    """``onboarded`` with its first key given the scope to manage keys."""
    PartnerApiKey.objects.filter(partner=onboarded.partner).update(can_manage_access=True)
    return onboarded


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_token_obtain_signs_with_the_configured_algorithm_and_lifetime(onboarded, settings):
    # when
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "acme", "password": PASSWORD}, format="json"
    )

    # then
    assert response.status_code == 200
    access = response.json()["access"]
    assert jwt.get_unverified_header(access)["alg"] == settings.ALGORITHM
    claims = jwt.decode(access, settings.SECRET_KEY, algorithms=[settings.ALGORITHM])
    assert claims["exp"] - claims["iat"] == settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60


def test_token_opens_the_partners_own_data(onboarded):
    # given
    tokens = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "acme", "password": PASSWORD}, format="json")
        .json()
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

    # when
    response = client.get("/api/v1/api-keys/")

    # then
    assert response.status_code == 200
    assert [key["prefix"] for key in response.json()["results"]] == [
        PartnerApiKey.objects.get(partner=onboarded.partner).prefix
    ]


def test_token_refresh_gives_a_new_access_token(onboarded):
    # given
    refresh = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "acme", "password": PASSWORD}, format="json")
        .json()["refresh"]
    )

    # when
    response = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")

    # then
    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(onboarded.user.pk)


def test_token_refused_with_a_wrong_password(onboarded):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "acme", "password": "wrong"}, format="json"
    )

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


def test_token_refused_to_a_user_of_no_partner(db):
    # given
    get_user_model().objects.create_user("loner", password=PASSWORD)

    # when
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "loner", "password": PASSWORD},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    # then
    assert response.status_code == 403
    assert response.json()["message"] == "This user does not act for any partner."


def test_expired_access_token_is_refused(onboarded):
    # given
    token = AccessToken.for_user(onboarded.user)
    token.set_exp(lifetime=-datetime.timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    # when
    response = client.get("/api/v1/api-keys/")

    # then
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_credentials_answer_401_with_the_challenge(db):
    response = APIClient().get("/api/v1/api-keys/")

    assert response.status_code == 401
    assert response.json() == {
        "code": "not_authenticated",
        "message": "Las credenciales de autenticación no se proveyeron.",
        "errors": [],
    }


def test_api_key_acts_for_its_partner_and_records_its_use(onboarded):
    # when
    response = key_client(onboarded.api_key).get("/api/v1/campaigns/")

    # then
    assert response.status_code == 200
    assert PartnerApiKey.objects.get(partner=onboarded.partner).last_used_at is not None


@pytest.mark.parametrize(
    "mangle", [lambda key: key + "x", lambda key: "nope." + key.partition(".")[2], lambda key: ""]
)
def test_wrong_api_key_is_refused(onboarded, mangle):
    response = key_client(mangle(onboarded.api_key)).get(
        "/api/v1/api-keys/", HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 401
    assert response.json()["message"] == "The API key is not valid or was revoked."
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_api_key_is_refused_from_then_on(onboarded):
    # given
    with_access_scope(onboarded)
    client = key_client(onboarded.api_key)
    prefix = onboarded.api_key.partition(".")[0]

    # when
    revoked = client.post(f"/api/v1/api-keys/{prefix}/revoke/")

    # then
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    assert client.get("/api/v1/api-keys/").status_code == 401


def test_expired_api_key_is_refused(onboarded):
    # given
    PartnerApiKey.objects.update(expiry_date=timezone.now() - datetime.timedelta(minutes=1))

    # when
    response = key_client(onboarded.api_key).get("/api/v1/api-keys/", HTTP_ACCEPT_LANGUAGE="en")

    # then
    assert response.status_code == 401
    assert response.json()["message"] == "The API key has expired."


def test_deactivated_partner_is_refused(onboarded):
    # given
    Partner.objects.update(is_active=False)

    # when
    response = key_client(onboarded.api_key).get("/api/v1/api-keys/", HTTP_ACCEPT_LANGUAGE="en")

    # then
    assert response.status_code == 403
    assert response.json()["message"] == "This partner is deactivated."


def test_new_api_key_is_shown_once_and_stored_hashed(onboarded):
    # given
    client = key_client(with_access_scope(onboarded).api_key)

    # when
    response = client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json")

    # then
    assert response.status_code == 201
    key = response.json()["key"]
    stored = PartnerApiKey.objects.get(prefix=response.json()["prefix"])
    assert stored.partner == onboarded.partner
    assert key not in stored.hashed_key and key not in stored.id
    assert key_client(key).get("/api/v1/campaigns/").status_code == 200
    shown_again = client.get(f"/api/v1/api-keys/{stored.prefix}/")
    assert shown_again.status_code == 200 and "key" not in shown_again.json()


def test_api_keys_of_another_partner_are_not_found(onboarded):
    # given
    other = onboard_partner(name="Other", username="other", password=PASSWORD)
    other_prefix = other.api_key.partition(".")[0]
    client = key_client(with_access_scope(onboarded).api_key)

    # when
    read = client.get(f"/api/v1/api-keys/{other_prefix}/")
    revoke = client.post(f"/api/v1/api-keys/{other_prefix}/revoke/")

    # then
    assert (read.status_code, revoke.status_code) == (404, 404)
    assert not PartnerApiKey.objects.get(prefix=other_prefix).revoked


def test_staff_onboard_a_partner_with_its_first_user_and_key(staff_client):
    # when
    response = staff_client.post(
        "/api/v1/partners/", {"name": "Beta", "username": "beta"}, format="json"
    )

    # then
    assert response.status_code == 201
    body = response.json()
    assert body["partner"]["name"] == "Beta"
    member = PartnerMember.objects.get(user__username="beta")
    assert member.partner.pk == body["partner"]["id"]
    assert member.user.check_password(body["password"])
    assert key_client(body["api_key"]).get("/api/v1/campaigns/").status_code == 200


def test_onboarding_refuses_a_taken_username_and_creates_nothing(staff_client, onboarded):
    # when
    response = staff_client.post(
        "/api/v1/partners/",
        {"name": "Gamma", "username": "acme"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    # then
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "username", "code": "invalid", "message": "A user named “acme” already exists."}
    ]
    assert not Partner.objects.filter(name="Gamma").exists()


def test_partners_are_staff_only(onboarded):
    response = key_client(onboarded.api_key).get("/api/v1/partners/")

    assert response.status_code == 403


def test_staff_cannot_use_the_partners_own_key_endpoint(staff_client):
    assert staff_client.get("/api/v1/api-keys/").status_code == 403


# --- Staff roles: the same permissions in the API as in the admin ------------------------


def role_client(role: str | None) -> APIClient:
    """A staff user in the role group ``role`` (None: staff of no role)."""
    user = get_user_model().objects.create_user(role or "nobody", password=PASSWORD, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_viewer_reads_campaigns_but_cannot_run_or_create_them(campaign):
    # given
    viewer = role_client("viewer")

    # when
    listed = viewer.get("/api/v1/campaigns/")
    started = viewer.post(f"/api/v1/campaigns/{campaign.pk}/start/")
    created = viewer.post(
        "/api/v1/campaigns/", {"partner": campaign.partner_id, "name": "Otra"}, format="json"
    )
    contact = viewer.post(
        f"/api/v1/campaigns/{campaign.pk}/contacts/", {"phone": "+34612345678"}, format="json"
    )

    # then
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [campaign.pk]
    assert (started.status_code, created.status_code, contact.status_code) == (403, 403, 403)
    assert "campaigns.control_campaign" in started.json()["message"]
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DRAFT
    assert not campaign.contacts.exists()


def test_an_operator_runs_campaigns_and_adds_contacts_but_cannot_onboard_partners(campaign):
    # given
    operator = role_client("operator")

    # when
    contact = operator.post(
        f"/api/v1/campaigns/{campaign.pk}/contacts/", {"phone": "+34612345678"}, format="json"
    )
    paused = operator.post(f"/api/v1/campaigns/{campaign.pk}/pause/")
    partner = operator.post("/api/v1/partners/", {"name": "Gamma", "username": "g"}, format="json")
    edited = operator.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "X"}, format="json")

    # then the control reached the service (a draft cannot pause), the rest is refused
    assert contact.status_code == 201
    assert paused.status_code == 409
    assert (partner.status_code, edited.status_code) == (403, 403)
    assert not Partner.objects.filter(name="Gamma").exists()


def test_staff_of_no_role_see_nothing(campaign):
    response = role_client(None).get("/api/v1/campaigns/")

    assert response.status_code == 403


def test_create_partner_command_prints_the_key_once(db, capsys):
    # when
    call_command("create_partner", "Delta", "--user", "delta")

    # then
    out = capsys.readouterr().out
    key = out.split(": ")[-1].strip()
    api_key = PartnerApiKey.objects.get(partner__name="Delta")
    assert api_key.is_valid(key)
    assert PartnerMember.objects.get(user__username="delta").partner == api_key.partner


def test_create_partner_command_reports_a_taken_name(onboarded):
    with pytest.raises(CommandError, match="name"):
        call_command("create_partner", "Acme", "--user", "someone")


def test_shared_api_models_are_the_ones_campaigns_names_when_ready() -> None:
    from callcenter.access import model_of, partner_model
    from campaigns.models import IdempotencyKey

    assert partner_model() is Partner
    assert model_of("idempotency_key") is IdempotencyKey


def test_shared_api_models_refuse_loudly_when_no_app_named_them(monkeypatch) -> None:
    from callcenter import access

    # given
    monkeypatch.setattr(access, "_models", {})

    # when / then
    with pytest.raises(ImproperlyConfigured, match="partner model"):
        access.partner_model()
