"""Partners never see or touch each other's data: every route of the API router, with every
method, as partner A on partner B's objects, answers 404 (or 403/405) and changes nothing."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.utils import timezone
from rest_framework.test import APIClient

import callcenter.urls  # noqa: F401 - registers the routes on the router
from callcenter.api import PartnerScopedMixin, router
from calls.models import Call
from campaigns.models import (
    ContactImportError,
    DoNotCall,
    PartnerApiKey,
    WebhookDelivery,
)
from campaigns.services import onboard_partner
from privacy.models import DataSubjectRequest
from tests.factories import (
    CallEventFactory,
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    ContactImportFactory,
    DoNotCallFactory,
    TurnFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)

METHODS = ("get", "post", "put", "patch", "delete")
APPS = ("campaigns", "calls", "templates", "voices", "auth")


def everything_of(name: str, phone: str) -> dict[str, Any]:
    """A partner with one object of every kind the API shows, and an API key."""
    onboarded = onboard_partner(name=name, username=name.lower(), password="pw-long-enough-1")
    partner = onboarded.partner
    template = CallTemplateFactory(
        partner=partner,
        name=f"{name} script",
        greeting="Hola. Le llamamos de {{ partner }}. Soy un asistente automático.",
        instructions="Confirma la cita.",
    )
    campaign = CampaignFactory(partner=partner, name=f"{name} campaign", template=template)
    contact = ContactFactory(campaign=campaign, phone=phone, external_id=f"{name}-1")
    now = timezone.now()
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.COMPLETED,
        provider_sid=f"CA{name.lower():0<32}"[:34],
        from_number="+34910000000",
        to_number=phone,
        answered_at=now - datetime.timedelta(minutes=2),
        ended_at=now,
        duration_seconds=120,
        price=Decimal("0.01300"),
        price_unit="EUR",
        recording_sid="RE" + "1" * 32,
        recording_url="https://api.twilio.com/recording",
    )
    TurnFactory(call=call, sequence=1, role="agent", text="Hola", started_at=now)
    CallEventFactory(call=call, provider_sid=call.provider_sid, kind="status", payload={})
    DoNotCallFactory(partner=partner, phone=phone, source=DoNotCall.Source.PARTNER_API)
    contact_import = ContactImportFactory(
        campaign=campaign, file=ContentFile(b"phone\n600000000\n", name="contacts.csv")
    )
    ContactImportError.objects.create(
        contact_import=contact_import, row=2, field="phone", value="x", message="bad"
    )
    endpoint = WebhookEndpointFactory(
        partner=partner, url="https://example.com/hook", events=["call.completed"]
    )
    delivery = WebhookDeliveryFactory(
        endpoint=endpoint,
        event_id="7b7e3f0e-6c38-4c0c-9d7c-1f5b8f0f2a11",
        event_type="call.completed",
        payload={},
        state=WebhookDelivery.State.FAILED,
    )
    return {
        "partner": partner,
        "api_key": onboarded.api_key,
        "objects": [
            partner,
            template,
            campaign,
            contact,
            call,
            contact_import,
            endpoint,
            delivery,
            PartnerApiKey.objects.get(partner=partner),
            DoNotCall.objects.get(partner=partner),
            DataSubjectRequest.objects.create(
                kind="export", partner=partner, subject="0" * 64, actor_type="partner"
            ),
        ],
    }


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every model the API could reach, except the ones requests themselves
    write (idempotency records, the key's last use)."""
    rows = {}
    for model in apps.get_models():
        if model._meta.app_label not in APPS or model._meta.model_name == "idempotencykey":
            continue
        values = model.objects.order_by("pk").values()
        rows[model._meta.label] = [
            {name: value for name, value in row.items() if name != "last_used_at"} for row in values
        ]
    return rows


def detail_routes() -> Iterator[tuple[str, type, str]]:
    """(regex, viewset, lookup kwarg) of every router route that names one object."""
    for pattern in router.urls:
        callback = pattern.callback
        viewset = getattr(callback, "cls", None)
        regex = pattern.pattern.regex.pattern
        lookup = getattr(viewset, "lookup_url_kwarg", None) or getattr(
            viewset, "lookup_field", "pk"
        )
        # Voices are one catalogue for everyone: not any partner's objects.
        if not (viewset and issubclass(viewset, PartnerScopedMixin)):
            continue
        if f"(?P<{lookup}>" not in regex or "(?P<format>" in regex:
            continue
        yield regex, viewset, lookup


def fill(regex: str, lookup: str, value: str) -> str:
    path = re.sub(rf"\(\?P<{lookup}>[^)]*\)", value, regex)
    return "/api/v1/" + path.lstrip("^").rstrip("$")


def owned_object(viewset: type, objects: list[Any]) -> Any:
    model = viewset.queryset.model
    return next(obj for obj in objects if isinstance(obj, model))


@pytest.fixture
def partners(db: None) -> tuple[dict[str, Any], dict[str, Any]]:
    return everything_of("Alfa", "+34600000001"), everything_of("Beta", "+34600000002")


def test_every_route_as_another_partner_answers_not_found_and_changes_nothing(partners):
    # given
    alfa, beta = partners
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {alfa['api_key']}")
    routes = list(detail_routes())
    assert len(routes) >= 15, routes  # the walk really covers the API
    before = snapshot()
    answers = {}

    # when
    for regex, viewset, lookup in routes:
        target = owned_object(viewset, beta["objects"])
        value = str(getattr(target, getattr(viewset, "lookup_field", "pk")))
        path = fill(regex, lookup, value)
        for method in METHODS:
            response = getattr(client, method)(path, {}, format="json")
            answers[(method.upper(), path)] = response.status_code

    # then
    wrong = {route: code for route, code in answers.items() if code not in (403, 404, 405)}
    assert wrong == {}
    assert snapshot() == before


def test_every_list_shows_only_the_partners_own_objects(partners):
    # given
    alfa, beta = partners
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {alfa['api_key']}")
    beta_ids = {(type(obj), str(obj.pk)) for obj in beta["objects"]}
    lists = [
        (pattern.pattern.regex.pattern, pattern.callback.cls)
        for pattern in router.urls
        if issubclass(getattr(pattern.callback, "cls", object), PartnerScopedMixin)
        and "list" in pattern.callback.actions.values()
        and "(?P<format>" not in pattern.pattern.regex.pattern
    ]
    assert len(lists) >= 8

    # when / then
    for regex, viewset in lists:
        path = "/api/v1/" + regex.lstrip("^").rstrip("$")
        response = client.get(path)
        if response.status_code == 403:  # staff-only lists
            continue
        assert response.status_code == 200, path
        model = viewset.queryset.model
        shown = {
            (model, str(row.get("id", row.get("prefix")))) for row in response.json()["results"]
        }
        assert not shown & beta_ids, path
