"""The whole partner API against its own OpenAPI schema (schemathesis): with a partner's
credentials, generated requests never get a 5xx and every answer matches the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callcenter.wsgi import application
from campaigns.models import Partner
from campaigns.services import onboard_partner
from tests.factories import CallTemplateFactory, CampaignFactory, ContactFactory


def _schema() -> schemathesis.schemas.BaseSchema:
    """The schema /api/schema/ serves, driving the WSGI application in this process."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(json.loads(json.dumps(document, cls=DjangoJSONEncoder)))
    loaded.app = application
    return loaded


schema = _schema()


@pytest.fixture
def partner_key(db, settings) -> Iterator[str]:
    """A partner with a little of everything, so that some generated ids exist."""
    # Generated requests come fast: the budget is not what is tested here.
    settings.API_THROTTLE_RATE = "100000/minute"
    onboarded = onboard_partner(name="Schema", username="schema", password="pw-long-enough-1")
    partner: Partner = onboarded.partner
    template = CallTemplateFactory(
        partner=partner,
        name="Guion",
        greeting="Hola. Le llamamos de {{ partner }}. Soy un asistente automático.",
        instructions="Confirma la cita.",
    )
    campaign = CampaignFactory(partner=partner, name="Campaña", template=template)
    ContactFactory(campaign=campaign, phone="+34600000001")
    # As Django's test client does: requests must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield onboarded.api_key
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Schemathesis calls every operation with generated input: minutes in all, so
# `make test-fast` skips it.
@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_api_conforms_to_its_schema(case, partner_key):
    case.call_and_validate(
        headers={"Authorization": f"Api-Key {partner_key}"},
        # What the schema promises. Left out: whether generated ids exist and other rules a
        # schema cannot say (schemathesis's "positive data acceptance" and its converse).
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
