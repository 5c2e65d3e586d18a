"""Fault suite, hostile input: forged and replayed Twilio webhooks, broken contact files,
call templates trying to leave their sandbox, oversized bodies. Each gets a clear answer
and changes nothing it should not: what was good before is still there after.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, reverse
from rest_framework.test import APIClient

from calls import telephony
from calls import urls as call_urls
from calls.models import Call, CallEvent, Turn
from campaigns import imports
from campaigns.models import Campaign, Contact, ContactImport, DoNotCall, Partner
from templates.models import CallTemplate
from tests.factories import (
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    TurnFactory,
)
from tests.reliability.conftest import APP_URL, post_signed, webhook_path

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("twilio_settings")]

SID = "CA" + "5" * 32

# What Twilio posts to each of its webhooks, chosen so that each would change something
# if it were accepted: the callee opting out, the call ending, a machine answering...
WEBHOOK_PARAMS: dict[str, dict[str, str]] = {
    "answer": {"CallStatus": "in-progress"},
    "turn": {"SpeechResult": "No me llame más", "Confidence": "0.93"},
    "continue": {},
    "voicemail": {"AnsweredBy": "machine_end_beep"},
    "amd": {"AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "3200"},
    "recording": {
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "RecordingStatus": "completed",
        "RecordingDuration": "31",
    },
    "status": {"CallStatus": "completed", "SequenceNumber": "4", "CallDuration": "31"},
    "transfer-ended": {"DialCallStatus": "completed"},
    # ConversationRelay's <Connect> action, with our hand-off of a transfer.
    "relay-ended": {
        "SessionId": "VX" + "1" * 32,
        "SessionStatus": "ended",
        "HandoffData": '{"reason": "transfer"}',
    },
    "fallback": {"ErrorCode": "11200", "ErrorUrl": f"{APP_URL}/twilio/calls/1/answer"},
    "fallback-opt-out": {"Digits": "9"},
    # The numbers' own webhooks: a contact ringing back, a stranger opting out.
    "inbound": {
        "CallSid": "CA" + "7" * 32,
        "From": "+34600000001",
        "To": "+34910000000",
        "CallStatus": "ringing",
        "Direction": "inbound",
    },
    "inbound-status": {"CallStatus": "completed", "CallDuration": "31", "Direction": "inbound"},
    "inbound-opt-out": {"From": "+34600000009", "To": "+34910000000", "Digits": "9"},
    "inbound-fallback": {"ErrorCode": "11200", "From": "+34600000009", "To": "+34910000000"},
}
WEBHOOK_QUERIES = {"continue": "reply=0123456789abcdef"}


def twilio_webhooks() -> list[str]:
    """The name of every URL Twilio calls, as calls/urls.py declares them."""
    return [
        pattern.name
        for pattern in call_urls.urlpatterns
        if isinstance(pattern, URLPattern) and str(pattern.pattern).startswith("twilio/")
    ]


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row a webhook could write."""
    models = (Call, Turn, CallEvent, Contact, DoNotCall, Campaign)
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


@pytest.fixture
def live_call(campaign) -> Call:
    """A call in progress whose greeting was spoken: every webhook has something to do."""
    campaign.state = Campaign.State.RUNNING
    campaign.caller_number = "+34910000000"
    campaign.transfer_number = "+34910000999"
    campaign.save()
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        variables={"first_name": "Ana"},
        state=Contact.State.CALLING,
        attempts=1,
    )
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=SID,
        from_number="+34910000000",
        to_number=contact.phone,
    )
    TurnFactory(call=call, sequence=0, role="agent", text="Hola Ana.", started_at=call.created_at)
    return call


@pytest.fixture
def other_call(live_call) -> Call:
    contact = ContactFactory(
        campaign=live_call.campaign, phone="+34600000002", state=Contact.State.CALLING
    )
    return CallFactory(
        campaign=live_call.campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid="CA" + "6" * 32,
        from_number="+34910000000",
        to_number=contact.phone,
    )


def forgeries(name: str, call: Call, other: Call) -> Iterator[tuple[str, dict[str, str]]]:
    """Headers Twilio did not send for this request: none, junk, another key's, and
    Twilio's own signatures of other requests (replays)."""
    query = WEBHOOK_QUERIES.get(name, "")
    path = webhook_path(name, call.pk, query)
    params = {"CallSid": call.provider_sid, **WEBHOOK_PARAMS[name]}

    def signed(url: str, signed_params: dict[str, str]) -> dict[str, str]:
        return {"x-twilio-signature": telephony.sign_request(url=url, params=signed_params)}

    yield "no signature", {}
    yield "empty signature", {"x-twilio-signature": ""}
    yield "junk", {"x-twilio-signature": "bm90IGEgc2lnbmF0dXJl"}
    from twilio.request_validator import RequestValidator

    other_key = RequestValidator("another-account-token").compute_signature(APP_URL + path, params)
    yield "another account's key", {"x-twilio-signature": other_key}
    if webhook_path(name, other.pk, query) != path:  # a number's webhook serves every call
        yield "replay: another call", signed(APP_URL + webhook_path(name, other.pk, query), params)
    other_webhook = "status" if name != "status" else "recording"
    yield "replay: another webhook", signed(APP_URL + webhook_path(other_webhook, call.pk), params)
    yield (
        "replay: other parameters",
        signed(APP_URL + path, {**params, "CallSid": other.provider_sid}),
    )
    yield "replay: no parameters", signed(APP_URL + path, {})
    yield "replay: other query", signed(APP_URL + webhook_path(name, call.pk, "silence=1"), params)
    yield "replay: another host", signed("http://testserver" + path, params)


def test_every_twilio_webhook_is_in_this_walk() -> None:
    # A webhook added to calls/urls.py must be added here, so that it is walked too.
    assert sorted(twilio_webhooks()) == sorted(WEBHOOK_PARAMS)


@pytest.mark.parametrize("name", sorted(WEBHOOK_PARAMS))
def test_a_webhook_without_twilios_signature_for_it_is_refused_and_changes_nothing(
    client, live_call, other_call, name, django_capture_on_commit_callbacks
) -> None:
    # given
    path = webhook_path(name, live_call.pk, WEBHOOK_QUERIES.get(name, ""))
    params = {"CallSid": live_call.provider_sid, **WEBHOOK_PARAMS[name]}
    before = snapshot()

    for forgery, headers in forgeries(name, live_call, other_call):
        # when
        with django_capture_on_commit_callbacks() as queued:
            response = client.post(path, params, headers=headers)

        # then
        assert response.status_code == 403, forgery
        assert response.content == b"", forgery
        assert queued == [], forgery  # no task either
        assert snapshot() == before, forgery

    # and Twilio's own request is accepted (so a refusal above is the signature's doing)
    accepted = post_signed(client, path, params)
    assert accepted.status_code in (200, 204), accepted.content


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"CallSid": SID, "junk": "x" * (11 * 1024 * 1024)}, id="over 10 MiB"),
        pytest.param({f"field{index}": "1" for index in range(5_000)}, id="5,000 fields"),
    ],
)
def test_an_oversized_webhook_body_is_refused_and_changes_nothing(client, live_call, body) -> None:
    before = snapshot()

    response = client.post(webhook_path("status", live_call.pk), body)

    assert response.status_code in (400, 403)
    assert snapshot() == before


# --- Contact files ------------------------------------------------------------------------

GOOD_ROWS = "phone,first_name\n600000101,Ana\n600000102,Bea\n"
HOSTILE_FILES = {
    "not text (a spreadsheet)": b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4,
    "bytes no encoding reads": b"phone,first_name\n600000201,\x81\x8d\x8f\n",
    "UTF-16 without its mark": "phone,first_name\n600000201,Ana\n".encode("utf-16-le"),
    "a huge line": (
        "phone,first_name\n600000201,Ana\n600000202," + "x" * (imports.MAX_LINE_CHARS + 10) + "\n"
    ).encode(),
    "too many columns": (
        "phone," + ",".join(f"c{i}" for i in range(2_000)) + "\n600000201\n"
    ).encode(),
    "millions of columns": ("phone" + "," * 2_000_000 + "\n600000201\n").encode(),
}


@pytest.fixture
def api_campaign(api_partner: Partner) -> Campaign:
    template = CallTemplateFactory(
        partner=api_partner,
        name="Aviso",
        variables={"first_name": "Ana"},
        greeting=(
            "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
        ),
        instructions="Confirma la cita.",
    )
    campaign = CampaignFactory(partner=api_partner, name="Hostile", template=template)
    imports.import_csv(campaign=campaign, file=io.BytesIO(GOOD_ROWS.encode()))
    return campaign


def contacts_of(campaign: Campaign) -> list[tuple]:
    return list(campaign.contacts.order_by("phone").values_list("phone", "variables", "state"))


def upload(client: APIClient, campaign: Campaign, content: bytes):
    return client.post(
        f"/api/v1/campaigns/{campaign.pk}/contacts/",
        {"file": SimpleUploadedFile("contacts.csv", content, content_type="text/csv")},
        format="multipart",
    )


@pytest.mark.parametrize("hostile", sorted(HOSTILE_FILES))
def test_a_hostile_contact_file_is_refused_with_its_reason_keeping_every_contact(
    api_client, api_campaign, hostile, settings
) -> None:
    # given: a campaign with contacts; the file is small enough to import at once
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 8 * 1024 * 1024
    before = contacts_of(api_campaign)

    # when
    response = upload(api_client, api_campaign, HOSTILE_FILES[hostile])

    # then: a reason a person can act on, and nothing lost or half-imported
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    [error] = body["errors"]
    assert error["field"] == "file"
    assert len(error["message"]) > 20, error
    assert contacts_of(api_campaign) == before


@pytest.mark.parametrize("hostile", sorted(HOSTILE_FILES))
def test_a_hostile_contact_file_imported_in_the_background_fails_with_its_reason(
    api_client, api_campaign, hostile, settings, django_capture_on_commit_callbacks
) -> None:
    # given: every upload goes to the background import
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 0
    before = contacts_of(api_campaign)

    # when: it is uploaded, then the worker's task runs
    with django_capture_on_commit_callbacks(execute=False):
        response = upload(api_client, api_campaign, HOSTILE_FILES[hostile])
    assert response.status_code == 202, response.content
    done = imports.run_import(contact_import_id=response.json()["id"])

    # then: failed with the reason; the rows before a break are kept, nothing else changed
    assert done.state == ContactImport.State.FAILED
    assert len(done.failure_reason) > 20
    shown = api_client.get(f"/api/v1/imports/{done.pk}/").json()
    assert (shown["state"], shown["failure_reason"]) == ("failed", done.failure_reason)
    kept_before_the_break = [("+34600000201", {"first_name": "Ana"}, "pending")]
    after = contacts_of(api_campaign)
    assert after in (before, sorted(before + kept_before_the_break))


def test_bad_rows_among_good_ones_are_reported_and_the_good_ones_kept(
    api_client, api_campaign
) -> None:
    # given: good rows around rows with a missing number, a broken one, a bad zone, a
    # long id, and a misaligned row
    content = (
        "phone,first_name,time_zone,external_id\n"
        "600000301,Carla,,\n"
        ",David,,\n"
        "not a phone,Eva,,\n"
        "600000304,Flor,Mars/Olympus,\n"
        "600000305,Gema,," + "9" * 500 + "\n"
        "600000306,Hugo,,,,,,extra\n"
        "600000307,Irene,,\n"
    ).encode()
    before = contacts_of(api_campaign)

    # when
    response = upload(api_client, api_campaign, content)

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["total_rows"], body["created"], body["rejected"]) == (7, 2, 5)
    assert sorted(error["row"] for error in body["errors"]) == [3, 4, 5, 6, 7]
    assert all(error["message"] for error in body["errors"])
    assert contacts_of(api_campaign) == sorted(
        [
            *before,
            ("+34600000301", {"first_name": "Carla"}, "pending"),
            ("+34600000307", {"first_name": "Irene"}, "pending"),
        ]
    )


# --- What the product exports -------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_rejected_rows_of_a_hostile_file_download_as_cells_no_spreadsheet_runs(
    api_client, api_campaign, admin_client, settings, django_capture_on_commit_callbacks
) -> None:
    # given: a file whose bad rows carry formulas, imported in the background
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 0
    content = (
        b"phone,time_zone,note\n"
        b"=1+1,,a\n"
        b"+cmd|' /C calc'!A0,,b\n"
        b"-2+3,,c\n"
        b"@SUM(1+1)*cmd|' /C calc'!A0,,d\n"
        b'600000601,=HYPERLINK("http://evil.example/"),e\n'
        b"600000602,,f,=cmd|' /C calc'!A0\n"
        b"600000603,,g\n"
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = upload(api_client, api_campaign, content)
    contact_import = imports.run_import(contact_import_id=response.json()["id"])
    assert (contact_import.created_count, contact_import.error_count) == (1, 6)

    # when staff download the rejected rows
    download = admin_client.get(
        reverse("admin:campaigns_contactimport_rejected_rows", args=[contact_import.pk])
    )

    # then no cell starts a formula, and each rejected value is still there to read
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    cells = [cell for row in rows[1:] for cell in row]
    assert len(rows) == 7
    assert [cell for cell in cells if cell.startswith(FORMULA_STARTS)] == []
    values = {row[2].removeprefix("'") for row in rows[1:]}
    assert values == {
        "=1+1",
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        '=HYPERLINK("http://evil.example/")',
        "=cmd|' /C calc'!A0",
    }


# --- Call templates -----------------------------------------------------------------------

ESCAPES = [
    "{{ settings.SECRET_KEY }}",
    "{{ first_name.__class__.__mro__ }}",
    "{{ campaign.partner.api_keys.all }}",
    "{% load static %}{% get_static_prefix %}",
    "{% include '/etc/passwd' %}",
    "{% debug %}",
    "{% now 'Y' %}",
    "{{ first_name|safe }}{{ first_name|pprint }}",
    "{% if first_name.password %}x{% endif %}",
    "{{ first_name|default:settings }}",
    "{% verbatim %}{{ partner }}{% endverbatim %}",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_template_escaping_its_sandbox_is_refused_and_the_saved_one_kept(
    api_client, api_campaign, escape
) -> None:
    # given
    template = api_campaign.template
    saved = CallTemplate.objects.values().get(pk=template.pk)
    greeting = f"Hola {{{{ first_name }}}}. Le llamamos de {{{{ partner }}}}. {escape}"
    payload = {
        "name": "Escape",
        "variables": {"first_name": "Ana"},
        "greeting": greeting,
        "instructions": "Confirma la cita.",
    }

    # when: a new template, and a change of the one in use, carry the escape
    created = api_client.post("/api/v1/templates/", payload, format="json")
    changed = api_client.patch(
        f"/api/v1/templates/{template.pk}/", {"greeting": greeting}, format="json"
    )

    # then: refused, naming the field; nothing saved, the template in use unchanged
    for response in (created, changed):
        assert response.status_code == 400, response.content
        fields = {error["field"] for error in response.json()["errors"]}
        assert fields == {"greeting"}, response.json()
    assert not CallTemplate.objects.filter(name="Escape").exists()
    assert CallTemplate.objects.values().get(pk=template.pk) == saved


def test_template_syntax_in_a_contacts_data_is_spoken_as_written(client, live_call) -> None:
    # given: a contact whose name is an attempt to run template code on the call
    hostile = "{{ settings.SECRET_KEY }}{% debug %}"
    Contact.objects.filter(pk=live_call.contact_id).update(variables={"first_name": hostile})
    live_call.turns.all().delete()

    # when the callee picks up
    response = post_signed(
        client, webhook_path("answer", live_call.pk), {"CallSid": live_call.provider_sid}
    )

    # then the name is said as the text it is, and nothing else leaks
    twiml = response.content.decode()
    assert response.status_code == 200
    assert "Hola {{ settings.SECRET_KEY }}{% debug %}." in twiml.replace("&amp;", "&")
    assert "SECRET" not in twiml.replace("{{ settings.SECRET_KEY }}", "")
    assert live_call.turns.get().text.startswith("Hola {{ settings.SECRET_KEY }}{% debug %}.")


# --- Oversized and malformed API bodies ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(None, 413, "too_large", id="over API_MAX_BODY_BYTES"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, 400, None, id="nested 30,000 deep"),
        pytest.param(b'[{"phone": "600000401"', 400, None, id="cut short"),
        pytest.param(b'{"phone": "\xff\xfe"}', 400, None, id="not UTF-8"),
        pytest.param(b'[{"phone": "600000402", "first_name": NaN}]', 400, None, id="NaN"),
    ],
)
def test_an_oversized_or_malformed_json_body_is_refused_creating_nothing(
    api_client, api_campaign, settings, body, status, code
) -> None:
    # given
    settings.API_MAX_BODY_BYTES = 64 * 1024
    if body is None:
        rows = [{"phone": f"6{index:08d}", "first_name": "x" * 50} for index in range(2_000)]
        body = json_bytes(rows)
    before = contacts_of(api_campaign)

    # when
    response = api_client.generic(
        "POST",
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/",
        body,
        content_type="application/json",
    )

    # then
    assert response.status_code == status, response.content[:500]
    answer = response.json()
    assert answer["message"]
    if code:
        assert answer["code"] == code
    assert contacts_of(api_campaign) == before


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def test_a_number_json_cannot_store_rejects_its_row_only(api_client, api_campaign) -> None:
    # given: rows whose variables hold numbers too large for a float (Python reads them
    # as infinity; a JSON column cannot store that), between good rows
    body = (
        b'[{"phone": "600000501", "first_name": "Julia"},'
        b' {"phone": "600000502", "first_name": "Kai", "visits": 1e999},'
        b' {"phone": "600000503", "visits": -1e999},'
        b' {"phone": "600000504", "first_name": "Luz"}]'
    )
    before = contacts_of(api_campaign)

    # when
    response = api_client.generic(
        "POST",
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/",
        body,
        content_type="application/json",
    )

    # then
    assert response.status_code == 201, response.content
    answer = response.json()
    assert (answer["created"], answer["rejected"]) == (2, 2)
    assert [(error["row"], error["field"]) for error in answer["errors"]] == [
        (2, "variables"),
        (3, "variables"),
    ]
    assert contacts_of(api_campaign) == sorted(
        [
            *before,
            ("+34600000501", {"first_name": "Julia"}, "pending"),
            ("+34600000504", {"first_name": "Luz"}, "pending"),
        ]
    )
