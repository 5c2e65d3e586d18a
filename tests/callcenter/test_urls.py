from __future__ import annotations

import pytest

from tests.factories import PartnerFactory


@pytest.mark.django_db
def test_metrics_serves_prometheus_text_with_database_metrics(client) -> None:
    PartnerFactory(name="Acme")
    client.get("/health")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert 'django_db_execute_total{alias="default"' in text
    assert "django_migrations_unapplied_total" in text


@pytest.mark.django_db
def test_root_redirects_to_admin(client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
def test_admin_login_page_is_spanish_by_default_and_named_after_the_app(client, settings) -> None:
    response = client.get("/admin/login/")

    assert response.status_code == 200
    text = response.content.decode()
    assert settings.APP_NAME in text
    assert "Nombre de usuario" in text


@pytest.mark.django_db
def test_admin_speaks_english_when_asked(client) -> None:
    response = client.get("/admin/login/", headers={"accept-language": "en"})

    assert "Username" in response.content.decode()


@pytest.mark.django_db
def test_api_root_requires_credentials(client, admin_client) -> None:
    anonymous = client.get("/api/v1/")

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert admin_client.get("/api/v1/").status_code == 200


@pytest.mark.django_db
def test_admin_pages_are_titled_and_headed_with_the_app_name(admin_client, settings) -> None:
    # given the admin set up (its URLs loaded) before the name changes
    admin_client.get("/admin/")
    settings.APP_NAME = "Clínica Sur Llamadas"

    # when staff open it
    page = admin_client.get("/admin/").content.decode()

    # then the page's title and header say the name in force

    assert "<title>Operaciones | Clínica Sur Llamadas</title>" in page
    assert '<div id="site-name"><a href="/admin/">Clínica Sur Llamadas</a></div>' in page
