"""The admin's lists read as many queries for many rows as for a couple: unfiltered, with
each choice of each of their filters, drilled down by date, with the filters' counts, and
searched. Each row has related rows of its own, so a query per row would show."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Action, record
from calls.models import AnsweredBy, Call, CallEvent
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    DoNotCall,
    Partner,
    PartnerApiKey,
    SuppressionCopy,
    SuppressionList,
    WebhookDelivery,
    WebhookEndpoint,
)
from templates.models import CallTemplate
from tests.factories import (
    CallEventFactory,
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    ContactImportFactory,
    DoNotCallFactory,
    PartnerFactory,
    SpeechClipFactory,
    VoiceFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db

# Two, not one: a filter with a single choice is not shown, and reads less.
FEW = 2
MANY = 8


def phone(index: int) -> str:
    return f"+3460000{index:04d}"


def make_campaign(index: int, partner: Partner) -> Campaign:
    template = CallTemplateFactory(
        partner=partner,
        name=f"Script {index}",
        greeting="Hola. Le llamamos de {{ partner }}. Soy un asistente automático.",
    )
    return CampaignFactory(partner=partner, name=f"Campaign {index}", template=template)


def make_call(index: int, partner: Partner) -> Call:
    return CallFactory(
        contact__campaign=make_campaign(index, partner),
        contact__phone=phone(index),
        status=Call.Status.COMPLETED,
        answered_by=AnsweredBy.HUMAN,
        outcome={"opted_out": True, "callback_at": "2026-12-01T10:00:00Z"},
        provider_sid=f"CA{index:032d}",
    )


def make_event(index: int, partner: Partner) -> CallEvent:
    call = make_call(index, partner)
    return CallEventFactory(
        call=call, provider_sid=call.provider_sid, kind="status", sequence_number=0, payload={}
    )


def make_contact(index: int, partner: Partner) -> Contact:
    return ContactFactory(campaign=make_campaign(index, partner), phone=phone(index))


def make_do_not_call(index: int, partner: Partner) -> DoNotCall:
    user = get_user_model().objects.create_user(f"clerk{index}")
    own = PartnerFactory(name=f"Partner {index}")
    return DoNotCallFactory(partner=own, phone=phone(index), created_by=user)


def make_delivery(index: int, partner: Partner) -> WebhookDelivery:
    endpoint = WebhookEndpointFactory(
        partner=partner, url=f"https://example.com/hooks/{index}", events=["call.completed"]
    )
    return WebhookDeliveryFactory(
        endpoint=endpoint, event_id=uuid.uuid4(), event_type="call.completed", payload={}
    )


def make_template(index: int, partner: Partner) -> CallTemplate:
    own = PartnerFactory(name=f"Partner {index}")
    return make_campaign(index, own).template


def make_voice(index: int, partner: Partner) -> Voice:
    return VoiceFactory(provider_voice_id=f"voice-{index}", name=f"Voice {index}")


def make_clip(index: int, partner: Partner) -> SpeechClip:
    return SpeechClipFactory(
        key=f"{index:064d}",
        text=f"Hola {index}.",
        voice=make_voice(index, partner),
        model_id="eleven_flash_v2_5",
        output_format="mp3_44100_128",
    )


def make_import(index: int, partner: Partner) -> ContactImport:
    return ContactImportFactory(
        campaign=make_campaign(index, partner),
        file_name=f"contacts-{index}.csv",
        created_by=get_user_model().objects.create_user(f"clerk{index}"),
    )


def make_key(index: int, partner: Partner) -> PartnerApiKey:
    own = PartnerFactory(name=f"Partner {index}")
    return PartnerApiKey.objects.create_key(partner=own, name=f"Key {index}")[0]


def make_endpoint(index: int, partner: Partner) -> WebhookEndpoint:
    own = PartnerFactory(name=f"Partner {index}")
    return WebhookEndpointFactory(
        partner=own, url=f"https://example.com/hooks/{index}", events=["call.completed"]
    )


def make_partner(index: int, partner: Partner) -> Partner:
    return PartnerFactory(name=f"Partner {index}")


def make_suppression_list(index: int, partner: Partner) -> SuppressionList:
    user = get_user_model().objects.create_user(f"importer{index}")
    return SuppressionList.objects.create(
        name=f"Robinson {index}", kind="robinson_es", country_code="34", imported_by=user
    )


def make_suppression_copy(index: int, partner: Partner) -> SuppressionCopy:
    return SuppressionCopy.objects.create(
        suppression_list=make_suppression_list(index, partner),
        refreshed_at=timezone.localdate(),
        file_name=f"robinson-{index}.txt",
        created_by=get_user_model().objects.create_user(f"uploader{index}"),
    )


def make_audit_entry(index: int, partner: Partner) -> AuditEntry:
    own = PartnerFactory(name=f"Partner {index}")
    return record(
        Action.CONTACT_SKIPPED,
        partner_id=own.pk,
        subject_phone=phone(index),
        object_type="campaigns.contact",
        object_id=index,
    )


# model: (a row of its own for each index, search terms that find the rows)
LISTS: dict[type, tuple[Callable, list[str]]] = {
    Call: (make_call, ["+34600", "600 000 000", "CA" + "0" * 32]),
    CallEvent: (make_event, ["CA" + "0" * 32]),
    Contact: (make_contact, ["+34600"]),
    DoNotCall: (make_do_not_call, ["+34600"]),
    WebhookDelivery: (make_delivery, ["example.com", str(uuid.uuid4())]),
    CallTemplate: (make_template, ["Script"]),
    Voice: (make_voice, ["Voice"]),
    SpeechClip: (make_clip, ["Hola"]),
    Campaign: (make_campaign, ["Campaign"]),
    ContactImport: (make_import, ["contacts"]),
    PartnerApiKey: (make_key, ["Key"]),
    WebhookEndpoint: (make_endpoint, ["example.com"]),
    Partner: (make_partner, ["Partner"]),
    SuppressionList: (make_suppression_list, ["Robinson"]),
    SuppressionCopy: (make_suppression_copy, []),
    AuditEntry: (make_audit_entry, ["+34600000001", "1"]),
}


def list_urls(client, model) -> list[str]:
    """The list, each choice of each of its filters, its date drill-down, its filters'
    counts and its searches, as the list with one row offers them."""
    base = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    changelist = client.get(base).context["cl"]
    urls = [base, f"{base}?_facets=True"]
    urls += [
        f"{base}{choice['query_string']}"
        for spec in changelist.filter_specs
        for choice in spec.choices(changelist)
    ]
    if field := changelist.date_hierarchy:
        day = timezone.localdate()
        urls += [
            f"{base}?{field}__year={day.year}",
            f"{base}?{field}__year={day.year}&{field}__month={day.month}",
            f"{base}?{field}__year={day.year}&{field}__month={day.month}&{field}__day={day.day}",
        ]
    urls += [f"{base}?q={term}" for term in LISTS[model][1]]
    return list(dict.fromkeys(urls))


def queries_of(client, urls: list[str]) -> dict[str, int]:
    counts = {}
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, url
        counts[url] = len(queries)
    return counts


@pytest.mark.parametrize("model", list(LISTS), ids=lambda model: model._meta.label)
def test_admin_list_reads_as_many_queries_for_many_rows_as_for_a_few(
    admin_client, partner, model
) -> None:
    # given a few rows, and the list's pages with each filter, drill-down and search
    make_row = LISTS[model][0]
    for index in range(FEW):
        make_row(index, partner)
    urls = list_urls(admin_client, model)
    queries_of(admin_client, urls)  # caches (content types, sessions) warmed
    few = queries_of(admin_client, urls)

    # when there are more rows, each with related rows of its own
    for index in range(FEW, MANY):
        make_row(index, partner)

    # then each page reads them in as many queries
    assert queries_of(admin_client, urls) == few
    listed = admin_client.get(urls[0]).context["cl"].result_list
    assert len(listed) == model._default_manager.count() >= MANY


@pytest.mark.parametrize("model", [Call, CallEvent, WebhookDelivery])
def test_busy_lists_do_not_count_every_row(admin_client, partner, model) -> None:
    LISTS[model][0](0, partner)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    assert admin_client.get(url).context["cl"].show_full_result_count is False


def test_delivery_list_finds_a_delivery_by_its_event_id(admin_client, partner) -> None:
    deliveries = [make_delivery(index, partner) for index in range(3)]
    url = reverse("admin:campaigns_webhookdelivery_changelist")

    found = admin_client.get(url, {"q": f" {deliveries[1].event_id} "}).context["cl"]
    by_url = admin_client.get(url, {"q": "hooks/2"}).context["cl"]

    assert list(found.result_list) == [deliveries[1]]
    assert list(by_url.result_list) == [deliveries[2]]


def test_call_event_list_shows_the_newest_first(admin_client, partner) -> None:
    older, newer = make_event(0, partner), make_event(1, partner)
    CallEvent.objects.filter(pk=older.pk).update(
        received_at=timezone.now() - datetime.timedelta(hours=1)
    )

    response = admin_client.get(reverse("admin:calls_callevent_changelist"))

    assert list(response.context["cl"].result_list) == [newer, older]


def test_every_list_of_the_apps_is_measured() -> None:
    listed = {
        model
        for model in admin.site._registry
        if model._meta.app_label in {"audit", "campaigns", "calls", "templates", "voices"}
    }

    assert listed == set(LISTS)
