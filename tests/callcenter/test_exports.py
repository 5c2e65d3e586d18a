"""What every export shares: harmless cells, the CSV and XLSX writers, the JSON keys that
become columns, and the exports' place in the API's schema."""

from __future__ import annotations

import datetime
import io
import zoneinfo
from decimal import Decimal

import openpyxl
import pytest
from drf_spectacular.generators import SchemaGenerator

from callcenter import exports
from callcenter.exports import FileFormat, Table, csv_cell, csv_chunks, defused, write_xlsx
from callcenter.queries import json_keys
from campaigns.models import Contact
from tests.factories import CampaignFactory, ContactFactory


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_defused_quotes_a_text_a_spreadsheet_would_take_for_a_formula(start) -> None:
    assert defused(f"{start}1+1") == f"'{start}1+1"


@pytest.mark.parametrize("text", ["", "Ana", "'=1", " =1", "1-1", "a@b.example"])
def test_defused_leaves_other_texts_alone(text) -> None:
    assert defused(text) == text


def test_csv_cell_writes_each_kind_of_value() -> None:
    madrid = datetime.datetime(2025, 5, 31, 10, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Madrid"))

    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"
    assert csv_cell(Decimal("-0.5")) == "-0.5"  # a number is never a formula
    assert csv_cell(madrid) == "2025-05-31T08:00:00Z"
    assert csv_cell({"a": "=1"}) == '{"a": "=1"}'
    assert csv_cell(["=1"]) == '["=1"]'
    assert csv_cell("+34600000000") == "'+34600000000"


def test_csv_chunks_sends_the_headers_first_then_rows_by_size(monkeypatch) -> None:
    monkeypatch.setattr(exports, "FLUSH_BYTES", 10)
    table = Table(title="T", headers=["=id", "name"], rows=iter([[1, "Ana"], [2, "Luis Pérez"]]))

    chunks = list(csv_chunks(table))

    assert chunks == [b"'=id,name\r\n", b"1,Ana\r\n2,Luis P\xc3\xa9rez\r\n"]


def test_write_xlsx_continues_on_new_sheets_past_excels_rows(monkeypatch) -> None:
    # given a sheet of three rows at most, the headers included
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 3)
    table = Table(title="Calls: [all]", headers=["id"], rows=([n] for n in range(1, 6)))
    file = io.BytesIO()

    write_xlsx(table, file)

    workbook = openpyxl.load_workbook(file)
    assert workbook.sheetnames == ["Calls   all ", "Calls   all  (2)", "Calls   all  (3)"]
    assert [[cell.value for cell in row] for row in workbook.worksheets[2].iter_rows()] == [
        ["id"],
        [5],
    ]
    assert sum(sheet.max_row - 1 for sheet in workbook.worksheets) == 5


def test_write_xlsx_of_no_rows_has_the_headers() -> None:
    file = io.BytesIO()

    write_xlsx(Table(title="Contacts", headers=["id", "phone"], rows=[]), file)

    sheet = openpyxl.load_workbook(file).active
    assert [cell.value for cell in next(sheet.iter_rows())] == ["id", "phone"]


def test_write_xlsx_cuts_a_text_at_excels_length_for_a_cell() -> None:
    file = io.BytesIO()

    write_xlsx(Table(title="T", headers=["text"], rows=[["x" * 40_000]]), file)

    sheet = openpyxl.load_workbook(file).active
    assert len(sheet["A2"].value) == 32_767


@pytest.mark.django_db
def test_json_keys_lists_each_key_once_and_skips_values_that_are_no_object(campaign) -> None:
    ContactFactory(campaign=campaign, phone="+34600000001", variables={"a": 1, "b": 2})
    ContactFactory(campaign=campaign, phone="+34600000002", variables={"b": 3, "c": {}})
    odd = ContactFactory(campaign=campaign, phone="+34600000003")
    Contact.objects.filter(pk=odd.pk).update(variables=["not", "an", "object"])
    other = CampaignFactory(partner=campaign.partner, name="Other")
    ContactFactory(campaign=other, phone="+34600000004", variables={"z": 1})

    assert json_keys(Contact.objects.filter(campaign=campaign), "variables") == {"a", "b", "c"}
    assert json_keys(Contact.objects.none(), "variables") == set()


def test_the_exports_are_in_the_api_schema_with_their_files_and_filters() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)

    calls = schema["paths"]["/api/v1/calls/export/"]["get"]
    contacts = schema["paths"]["/api/v1/contacts/export/"]["get"]
    call_parameters = {parameter["name"]: parameter for parameter in calls["parameters"]}
    contact_parameters = {parameter["name"] for parameter in contacts["parameters"]}
    assert call_parameters["format"]["schema"]["enum"] == ["csv", "xlsx"]
    assert call_parameters["transcript"]["schema"]["type"] == "boolean"
    assert {"campaign", "status", "outcome", "created_after"} <= set(call_parameters)
    assert {"format", "campaign", "state", "external_id", "search", "ordering"} <= (
        contact_parameters
    )
    for operation in (calls, contacts):
        assert set(operation["responses"]["200"]["content"]) == {
            exports.MEDIA_TYPES[FileFormat.CSV],
            exports.MEDIA_TYPES[FileFormat.XLSX],
        }
        assert "application/json" in operation["responses"]["400"]["content"]
