"""A partner probing ids through the API's filters: another partner's object and an object
that does not exist must answer alike, on every filter naming an object, so that no answer
says another partner's id exists."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from django.db import models
from django_filters import ModelChoiceFilter, ModelMultipleChoiceFilter
from django_filters.rest_framework import DjangoFilterBackend

import callcenter.urls  # noqa: F401 (registers the API's routes)
from callcenter.api import router
from campaigns.models import (
    Campaign,
    Contact,
    Partner,
    WebhookEndpoint,
)
from templates.models import CallTemplate
from tests.factories import (
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    ContactImportFactory,
    DoNotCallFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)

pytestmark = pytest.mark.django_db


def _campaign(partner: Partner) -> Campaign:
    template = CallTemplateFactory(
        partner=partner,
        name=f"Aviso {uuid.uuid4().hex[:8]}",
        variables={"first_name": "Ana"},
        greeting=(
            "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
        ),
        instructions="Confirma la cita.",
    )
    return CampaignFactory(
        partner=partner, name=f"Primavera {uuid.uuid4().hex[:8]}", template=template
    )


def _contact(partner: Partner) -> Contact:
    return ContactFactory(campaign=_campaign(partner), phone="+34600000001")


def _endpoint(partner: Partner) -> WebhookEndpoint:
    return WebhookEndpointFactory(
        partner=partner, url="https://example.com/hook", events=["call.completed"]
    )


# How to make a partner's object of each kind a filter can name.
FACTORIES: dict[type[models.Model], Callable[[Partner], models.Model]] = {
    Partner: lambda partner: partner,
    Campaign: _campaign,
    Contact: _contact,
    WebhookEndpoint: _endpoint,
    CallTemplate: lambda partner: _campaign(partner).template,
}


def _object_filters() -> Iterator[tuple[str, str, type[models.Model]]]:
    """(list URL, query parameter, model) of every filter naming an object, on every list
    endpoint of the router."""
    backend = DjangoFilterBackend()
    for prefix, viewset, _basename in router.registry:
        view = viewset(action="list", request=None, format_kwarg=None, kwargs={})
        if not any(issubclass(used, DjangoFilterBackend) for used in view.filter_backends):
            continue
        filterset_class = backend.get_filterset_class(view, viewset.queryset)
        if filterset_class is None:
            continue
        model = filterset_class._meta.model
        for name, declared in filterset_class.base_filters.items():
            if isinstance(declared, ModelChoiceFilter | ModelMultipleChoiceFilter):
                related = model._meta.get_field(declared.field_name).related_model
                yield f"/api/v1/{prefix}/", name, related


OBJECT_FILTERS = sorted(_object_filters(), key=lambda item: (item[0], item[1]))


def test_the_filters_probed_include_those_of_imports_deliveries_and_the_do_not_call_list():
    probed = {(url, name) for url, name, _model in OBJECT_FILTERS}
    assert {
        ("/api/v1/imports/", "campaign"),
        ("/api/v1/webhooks/deliveries/", "endpoint"),
        ("/api/v1/dnc/", "partner"),
    } <= probed


@pytest.mark.parametrize(
    ("url", "name", "model"),
    OBJECT_FILTERS,
    ids=[f"{url}?{name}" for url, name, _model in OBJECT_FILTERS],
)
def test_another_partners_id_in_a_filter_answers_as_an_id_that_does_not_exist(
    api_client, api_partner, other_api_partner, url, name, model
) -> None:
    # given: an object of the other partner, and an id no object has
    others = FACTORIES[model](other_api_partner)
    missing = model._default_manager.order_by("-pk").values_list("pk", flat=True).first() + 1000

    # when the partner filters by each
    other = api_client.get(url, {name: others.pk}, headers={"accept-language": "en"})
    unknown = api_client.get(url, {name: missing}, headers={"accept-language": "en"})

    # then: the same answer, which says nothing of the other partner
    assert (other.status_code, other.json()) == (unknown.status_code, unknown.json())
    assert other.status_code == 400
    assert [error["field"] for error in other.json()["errors"]] == [name]


def test_a_filter_by_the_partners_own_object_still_filters(api_client, api_partner) -> None:
    # given: two of the partner's campaigns, one with an import
    mine = _campaign(api_partner)
    _campaign(api_partner)
    contact_import = ContactImportFactory(campaign=mine, file_name="contacts.csv")
    endpoint = _endpoint(api_partner)
    WebhookDeliveryFactory(
        endpoint=endpoint, event_id=uuid.uuid4(), event_type="call.completed", payload={}
    )
    DoNotCallFactory(partner=api_partner, phone="+34600000009")

    # when / then
    imports = api_client.get("/api/v1/imports/", {"campaign": mine.pk})
    assert [row["id"] for row in imports.json()["results"]] == [contact_import.pk]
    deliveries = api_client.get("/api/v1/webhooks/deliveries/", {"endpoint": endpoint.pk})
    assert len(deliveries.json()["results"]) == 1
    numbers = api_client.get("/api/v1/dnc/", {"partner": api_partner.pk})
    assert [row["phone"] for row in numbers.json()["results"]] == ["+34600000009"]
