from __future__ import annotations

import codecs
import datetime
import io
import sys
import threading
from collections.abc import Iterator

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection, connections
from django.utils import timezone, translation

from campaigns import imports
from campaigns.eligibility import eligibility_for
from campaigns.imports import (
    ImportFileError,
    RowError,
    create_import,
    import_csv,
    import_rows,
    run_import,
    storage,
)
from campaigns.imports.rows import _SeenKeys
from campaigns.models import Campaign, Contact, ContactImport
from campaigns.services import add_contact
from campaigns.tasks import import_contacts_task
from tests.factories import ContactImportFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """The messages asserted below are the English ones."""
    with translation.override("en"):
        yield


@pytest.fixture
def events(monkeypatch) -> list[dict]:
    """The partner events the imports emit, recorded instead of delivered."""
    sent: list[dict] = []

    def emit_event(**kwargs) -> int:
        sent.append(kwargs)
        return 0

    monkeypatch.setattr("campaigns.imports.runs.emit_event", emit_event)
    return sent


def csv_file(text: str, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(text.encode(encoding))


def stored_import(campaign: Campaign, content: bytes, name: str = "contacts.csv"):
    contact_import = ContactImport(campaign=campaign, file_name=name)
    contact_import.file.save("test.csv", ContentFile(content), save=False)
    contact_import.save()
    return contact_import


def spanish_rows(count: int, start: int = 0) -> str:
    return "".join(
        f"6{index:08d},CRM-{index},Nombre {index}\n" for index in range(start, start + count)
    )


# --- Rows -------------------------------------------------------------------------------


def test_import_rows_keeps_good_rows_and_names_each_bad_one(campaign) -> None:
    # given
    rows = [
        {"phone": "600 12 34 56", "external_id": "A-1", "variables": {"first_name": "Ana"}},
        {"phone": "12345", "external_id": "A-2"},
        {"phone": "+34 910 00 00 01", "time_zone": "Mars/Olympus"},
        {"phone": "+34910000002", "plan": "gold", "variables": {"first_name": "Luis"}},
        "not an object",
        {"external_id": "A-5"},
        {"phone": "+34910000006", "variables": ["a list"]},
        {"phone": "+34910000007", "external_id": "x" * 201},
        {"phone": "+34910000008", "variables": {"score": float("nan")}},
    ]

    # when
    result = import_rows(campaign=campaign, rows=rows)

    # then
    assert (result.total_rows, result.created, result.merged, result.rejected) == (9, 2, 0, 7)
    by_row = {error.row: error for error in result.errors}
    assert by_row[2].field == "phone" and by_row[2].value == "12345"
    assert "12345" in by_row[2].message
    assert (by_row[3].field, by_row[3].value) == ("time_zone", "Mars/Olympus")
    assert by_row[5].field == "" and by_row[5].value == '"not an object"'
    assert (by_row[6].field, by_row[6].value) == ("phone", "")
    assert by_row[7].field == "variables"
    assert by_row[8].field == "external_id"
    assert by_row[9].field == "variables"
    ana = campaign.contacts.get(external_id="A-1")
    assert (ana.phone, ana.variables) == ("+34600123456", {"first_name": "Ana"})
    luis = campaign.contacts.get(phone="+34910000002")
    assert luis.variables == {"plan": "gold", "first_name": "Luis"}
    assert luis.time_zone == "Europe/Madrid"


def test_import_rows_reports_every_problem_of_a_row(campaign) -> None:
    result = import_rows(
        campaign=campaign, rows=[{"phone": 600123456.5, "time_zone": "Nowhere", "variables": 3}]
    )

    assert sorted(error.field for error in result.errors) == ["phone", "time_zone", "variables"]
    assert {error.row for error in result.errors} == {1}
    assert result.rejected == 1


def test_import_rows_merges_like_add_contact(campaign) -> None:
    # given
    contact, _created = add_contact(
        campaign=campaign, phone="+34600123456", variables={"first_name": "Ana", "plan": "free"}
    )

    # when
    result = import_rows(
        campaign=campaign,
        rows=[
            {"phone": "600 123 456", "variables": {"plan": "gold"}},
            {"phone": "+34600000001", "external_id": "B-1", "city": "Bilbao"},
            {"phone": "+34600000002", "external_id": "B-1", "city": "Vigo"},
        ],
    )

    # then: the row giving B-1 another phone is refused, not merged dropping its phone
    assert (result.created, result.merged) == (1, 1)
    assert [(error.row, error.field, error.value) for error in result.errors] == [
        (3, "phone", "+34600000002")
    ]
    contact.refresh_from_db()
    assert contact.variables == {"first_name": "Ana", "plan": "gold"}
    b1 = campaign.contacts.get(external_id="B-1")
    assert (b1.phone, b1.variables) == ("+34600000001", {"city": "Bilbao"})
    assert campaign.contacts.count() == 2


def test_import_rows_keeps_rows_without_a_needed_variable_and_names_it(campaign) -> None:
    # given rows for a template that speaks first_name (and "day" only with a default)
    campaign.template.instructions = (
        "Confirma la cita de {{ first_name }} el {{ day|default:'lunes' }}."
    )
    campaign.template.variables = {"first_name": "Lucía", "day": "lunes"}
    campaign.template.save()
    rows = [
        {"phone": "+34910000001", "first_name": "Ana"},
        {"phone": "+34910000002"},
        {"phone": "+34910000003", "first_name": "  "},
        {"phone": "+34910000004", "first_name": None},
        {"phone": "+34910000005", "first_name": 0},
        {"phone": "12345"},
    ]

    # when
    result = import_rows(campaign=campaign, rows=rows)

    # then every good row is kept; those without a first name are flagged, each named
    assert (result.created, result.rejected, result.flagged) == (5, 1, 3)
    assert result.missing_variables == {"first_name": 3}
    assert [(w.row, w.field, w.value) for w in result.warnings] == [
        (2, "first_name", ""),
        (3, "first_name", "  "),
        (4, "first_name", ""),
    ]
    assert result.warnings[0].message == (
        "Missing variable first_name, which the call template needs: the contact is kept, "
        "but it will not be called until it has a value."
    )
    # and eligibility refuses to call such a contact, for the same reason
    kept = Contact.objects.with_campaign().get(phone="+34910000002")
    assert kept.state == Contact.State.PENDING
    reasons = [reason.message for reason in eligibility_for(contact=kept).reasons]
    assert "missing variable first_name" in reasons


def test_import_rows_flags_the_contact_as_saved_merges_included(campaign) -> None:
    # given a contact with a first name, and one without
    add_contact(campaign=campaign, phone="+34910000001", variables={"first_name": "Ana"})
    add_contact(campaign=campaign, phone="+34910000002", variables={"plan": "gold"})

    # when rows merge into both, and a row without it is completed by a later one
    result = import_rows(
        campaign=campaign,
        rows=[
            {"phone": "+34910000001", "plan": "gold"},
            {"phone": "+34910000002", "plan": "silver"},
            {"phone": "+34910000003"},
            {"phone": "+34910000003", "first_name": "Cara"},
        ],
    )

    # then only the contact that still lacks it is flagged, on the row merged into it
    assert (result.created, result.merged, result.flagged) == (1, 3, 1)
    assert [(w.row, w.field) for w in result.warnings] == [(2, "first_name")]


def test_import_rows_flags_nothing_without_a_template(campaign) -> None:
    campaign.template = None
    campaign.save(update_fields=["template"])

    result = import_rows(campaign=campaign, rows=[{"phone": "+34910000001"}])

    assert (result.created, result.flagged, result.warnings) == (1, 0, [])
    assert result.missing_variables == {}


def test_import_rows_rejects_what_the_database_cannot_store(campaign) -> None:
    result = import_rows(
        campaign=campaign,
        rows=[
            {"phone": "+34600000001", "external_id": "a\x00b"},
            {"phone": "+34600000002", "note": "a\x00b"},
            {"phone": "+34600000003", "note": "\ud800"},
        ],
    )

    assert [(error.row, error.field) for error in result.errors] == [
        (1, "external_id"),
        (2, "variables"),
        (3, "variables"),
    ]
    assert not campaign.contacts.exists()


# --- CSV files --------------------------------------------------------------------------


def test_import_csv_numbers_rows_as_a_spreadsheet_and_keeps_good_ones(campaign) -> None:
    # given: the header is row 1; a quoted value over two lines is still one row
    text = (
        "phone,external_id,first_name,note\n"
        "600123456,C-1,Ana,\n"
        '600123457,C-2,Luis,"two\nlines"\n'
        "12345,C-3,Eva,\n"
        "\n"
        ",C-5,Sin teléfono,\n"
        "+34 910 00 00 01,C-6,Marta,VIP\n"
    )

    # when
    result = import_csv(campaign=campaign, file=csv_file(text))

    # then
    assert (result.total_rows, result.created, result.merged) == (5, 3, 0)
    assert result.errors == [
        RowError(
            row=4,
            field="phone",
            value="12345",
            message="“12345” is not a valid phone number (region ES).",
        ),
        RowError(row=6, field="phone", value="", message=result.errors[1].message),
    ]
    luis = campaign.contacts.get(external_id="C-2")
    assert luis.variables == {"first_name": "Luis", "note": "two\nlines"}
    # empty cells are left out
    assert campaign.contacts.get(external_id="C-1").variables == {"first_name": "Ana"}
    assert campaign.contacts.get(external_id="C-6").time_zone == "Europe/Madrid"


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("cp1252", b""),
    ],
)
def test_import_csv_reads_the_encodings_excel_writes(campaign, encoding, bom) -> None:
    # given: Spanish Excel: a semicolon, accents and CRLF
    text = "Teléfono;Nombre;Ciudad\r\n600123456;José Núñez;A Coruña\r\n600123457;Begoña;Ávila\r\n"

    # when
    result = import_csv(campaign=campaign, file=io.BytesIO(bom + text.encode(encoding)))

    # then
    assert (result.created, result.errors) == (2, [])
    assert campaign.contacts.get(phone="+34600123456").variables == {
        "Nombre": "José Núñez",
        "Ciudad": "A Coruña",
    }


def test_import_csv_decodes_across_chunk_boundaries(campaign, monkeypatch) -> None:
    # given: chunks of 7 bytes split UTF-8 characters, CRLF pairs and rows
    monkeypatch.setattr("campaigns.imports.decoding._CHUNK_BYTES", 7)
    utf8 = "phone,name\r\n600123456,Ñandú Güell\r\n600123457,Pérez\r\n".encode()
    # ASCII for several chunks, then a Windows-1252 byte: read as Windows-1252 from the start
    cp1252 = "phone,name\n600123458,Smith\n600123459,Muñoz\n".encode("cp1252")

    # when
    first = import_csv(campaign=campaign, file=io.BytesIO(utf8))
    second = import_csv(campaign=campaign, file=io.BytesIO(cp1252))

    # then
    assert (first.created, first.errors, second.created, second.errors) == (2, [], 2, [])
    names = dict(campaign.contacts.values_list("phone", "variables__name"))
    assert names == {
        "+34600123456": "Ñandú Güell",
        "+34600123457": "Pérez",
        "+34600123458": "Smith",
        "+34600123459": "Muñoz",
    }


def test_import_csv_refuses_utf8_broken_after_accents(campaign) -> None:
    content = "phone,name\n600123456,Pérez\n".encode() + "600123457,Muñoz\n".encode("cp1252")

    with pytest.raises(ImportFileError) as excinfo:
        import_csv(campaign=campaign, file=io.BytesIO(content))

    assert "UTF-8" in excinfo.value.message
    assert not campaign.contacts.exists()  # all or nothing


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,name,city", ","),
        ("phone;name;city", ";"),
        ("phone\tname\tcity", "\t"),
        ("phone|name|city", "|"),
        ('phone;"last, first";city', ";"),
    ],
)
def test_import_csv_sniffs_the_delimiter(campaign, header, delimiter) -> None:
    text = f"{header}\n" + delimiter.join(["600123456", "Ana", "Soria"]) + "\n"

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert (result.created, result.errors) == (1, [])
    assert len(campaign.contacts.get().variables) == 2


def test_import_csv_follows_excel_sep_line(campaign) -> None:
    result = import_csv(campaign=campaign, file=csv_file("sep=;\nphone;a,b\n600123456;1,5\n"))

    assert (result.created, result.errors) == (1, [])
    assert campaign.contacts.get().variables == {"a,b": "1,5"}


@pytest.mark.parametrize(
    ("header", "fields"),
    [
        ("Teléfono,Zona horaria,ID", ("phone", "time_zone", "external_id")),
        ("PHONE NUMBER,timezone,External-Id", ("phone", "time_zone", "external_id")),
        ("tel,tz,referencia", ("phone", "time_zone", "external_id")),
        ("Móvil,Huso horario,id_cliente", ("phone", "time_zone", "external_id")),
    ],
)
def test_import_csv_knows_column_aliases(campaign, header, fields) -> None:
    text = f"{header}\n600123456,Atlantic/Canary,K-1\n"

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert result.errors == []
    contact = campaign.contacts.get()
    assert (contact.phone, contact.time_zone, contact.external_id) == (
        "+34600123456",
        "Atlantic/Canary",
        "K-1",
    )
    assert contact.variables == {}


def test_import_csv_derives_the_time_zone_as_add_contact(campaign) -> None:
    text = "phone,time_zone\n910000001,\n600123456,\n928000001,\n910000002,America/New_York\n"

    import_csv(campaign=campaign, file=csv_file(text))

    zones = dict(campaign.contacts.values_list("phone", "time_zone"))
    assert zones == {
        "+34910000001": "Europe/Madrid",
        "+34600123456": "",  # a mobile may be in the Canaries: both zones are checked
        "+34928000001": "Atlantic/Canary",
        "+34910000002": "America/New_York",
    }


def test_import_csv_rejects_misaligned_rows_and_ignores_unnamed_columns(campaign) -> None:
    # given: the third column has no name; an unquoted comma in row 3 shifts its cells
    text = (
        "phone,name,,city\n600123456,Ana,x,Soria\n600123457,Pérez, Luis,x,Soria\n600123458,Eva,,,\n"
    )

    # when
    result = import_csv(campaign=campaign, file=csv_file(text))

    # then
    assert result.created == 2
    assert [(error.row, error.field, error.value) for error in result.errors] == [(3, "", "Soria")]
    assert campaign.contacts.get(phone="+34600123456").variables == {
        "name": "Ana",
        "city": "Soria",
    }


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"\r\n\r\n  \n", "empty"),
        (codecs.BOM_UTF8, "empty"),
        (b"phone,name\n", "no contacts"),
        (b"phone,name\n\n,\n", "no contacts"),
        (b"name,city\nAna,Soria\n", "It names: name, city"),
        (b"600123456,Ana\n", "It names: 600123456, Ana"),
        (b"phone,movil\n600123456,600123457\n", "“phone” and “movil”"),
        (b"phone,name,name\n600123456,Ana,Eva\n", "“name” appears twice"),
        (b"PK\x03\x04\x14\x00\x06\x00", "CSV UTF-8"),
        ("phone\n600123456\n".encode("utf-16-le"), "byte order mark"),
        (b"phone,name\n600123456,\x81\x8d\n", "byte 21"),
    ],
)
def test_import_csv_refuses_files_it_cannot_read(campaign, content, says) -> None:
    with pytest.raises(ImportFileError) as excinfo:
        import_csv(campaign=campaign, file=io.BytesIO(content))

    assert says in excinfo.value.message
    assert excinfo.value.code == "invalid_file"


def test_import_csv_refuses_too_many_columns(campaign) -> None:
    header = "phone," + ",".join(f"v{index}" for index in range(imports.MAX_COLUMNS))

    with pytest.raises(ImportFileError) as excinfo:
        import_csv(campaign=campaign, file=csv_file(f"{header}\n600123456\n"))

    assert "1001 columns" in excinfo.value.message


def test_import_csv_refuses_a_huge_line_naming_its_row(campaign, monkeypatch) -> None:
    # given: chunks shorter than the line, so that the line is read in pieces
    monkeypatch.setattr("campaigns.imports.decoding.MAX_LINE_CHARS", 1_000)
    monkeypatch.setattr("campaigns.imports.decoding._CHUNK_BYTES", 256)
    text = "phone,note\n600123456,short\n600123457," + "x" * 2_000 + "\n600123458,after\n"

    with pytest.raises(ImportFileError) as excinfo:
        import_csv(campaign=campaign, file=csv_file(text))

    assert excinfo.value.message.startswith("Row 3 ")
    assert not campaign.contacts.exists()


def test_import_csv_rejects_the_row_of_a_huge_value_and_reads_on(campaign) -> None:
    # given: a quoted value over many short lines, past the csv module's field limit
    huge = "\n".join(["y" * 100] * 2_000)
    text = f'phone,note\n600123456,ok\n600123457,"{huge}"\n600123458,after\n'

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert [(error.row, error.field) for error in result.errors] == [(3, "")]
    assert result.errors[0].value.startswith('600123457,"yyy')
    assert (result.total_rows, result.created) == (3, 2)


def test_import_csv_imports_ten_thousand_rows_in_few_queries(
    campaign, django_assert_max_num_queries
) -> None:
    # given
    text = "phone,external_id,first_name\n" + spanish_rows(10_000)
    progress: list[int] = []  # after each batch of 10,000

    # when
    # SQLite takes inserts of 90 rows at most (999 parameters)
    with django_assert_max_num_queries(20 if connection.vendor == "postgresql" else 150):
        result = import_csv(campaign=campaign, file=csv_file(text), on_progress=progress.append)

    # then
    assert (result.total_rows, result.created, result.merged, result.errors) == (
        10_000,
        10_000,
        0,
        [],
    )
    assert progress == [10_000]
    assert campaign.contacts.count() == 10_000
    last = campaign.contacts.get(external_id="CRM-9999")
    assert (last.phone, last.variables) == ("+34600009999", {"first_name": "Nombre 9999"})


def test_import_csv_merges_duplicates_within_a_file_into_the_earlier_row(campaign) -> None:
    # given: D-1 twice, and a third row with D-1's phone and no external id
    text = (
        "phone,external_id,plan,city\n"
        "600000001,D-1,free,Soria\n"
        "600000002,D-2,free,\n"
        "600000003,D-1,gold,\n"
        "600 000 001,,,León\n"
    )

    # when
    result = import_csv(campaign=campaign, file=csv_file(text))

    # then: D-1 with another phone is refused (merging would drop the phone)
    assert (result.total_rows, result.created, result.merged) == (4, 2, 1)
    assert [(error.row, error.field) for error in result.errors] == [(4, "phone")]
    d1 = campaign.contacts.get(external_id="D-1")
    assert (d1.phone, d1.variables) == ("+34600000001", {"plan": "free", "city": "León"})


def test_import_csv_merges_duplicates_across_batches(campaign, monkeypatch) -> None:
    monkeypatch.setattr("campaigns.imports.rows.BATCH_SIZE", 2)
    monkeypatch.setattr("campaigns.imports.storage.BATCH_SIZE", 2)
    text = "phone,external_id,n\n600000001,E-1,1\n600000002,E-2,2\n600000001,E-1,3\n"

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert (result.created, result.merged) == (2, 1)
    assert campaign.contacts.get(external_id="E-1").variables == {"n": "3"}


def test_import_csv_uploaded_again_imports_nothing_twice(campaign) -> None:
    # given
    text = "phone,external_id,first_name\n" + spanish_rows(300)
    import_csv(campaign=campaign, file=csv_file(text))
    # the same people, some numbers written differently, one new variable
    again = "telefono,id,first_name,plan\n" + "".join(
        f"+34 6{index:08d},CRM-{index},Nombre {index},gold\n" for index in range(300)
    )

    # when
    result = import_csv(campaign=campaign, file=csv_file(again))

    # then
    assert (result.created, result.merged, result.errors) == (0, 300, [])
    assert campaign.contacts.count() == 300
    assert campaign.contacts.get(external_id="CRM-7").variables == {
        "first_name": "Nombre 7",
        "plan": "gold",
    }


# --- In the background ------------------------------------------------------------------


def test_create_import_stores_the_file_and_queues_the_task_after_commit(
    campaign, admin_user, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given
    queued: list[int] = []
    monkeypatch.setattr(import_contacts_task, "delay", queued.append)
    upload = SimpleUploadedFile("../Lista clientes.csv", b"phone\n600123456\n")

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        contact_import = create_import(campaign=campaign, file=upload, by=admin_user)

    # then
    assert len(callbacks) == 1
    assert queued == [contact_import.pk]
    contact_import.refresh_from_db()
    assert contact_import.state == ContactImport.State.QUEUED
    assert contact_import.file_name == "Lista clientes.csv"
    assert contact_import.created_by == admin_user
    assert contact_import.file.name.startswith("imports/")
    with contact_import.file.open("rb") as stored:
        assert stored.read() == b"phone\n600123456\n"


def test_run_import_imports_the_stored_file_with_progress_and_errors(
    campaign, events, monkeypatch
) -> None:
    # given
    monkeypatch.setattr("campaigns.imports.rows.BATCH_SIZE", 100)
    monkeypatch.setattr("campaigns.imports.storage.BATCH_SIZE", 100)
    text = "phone,external_id,first_name\n" + spanish_rows(250) + "12345,BAD-1,Eva\n"
    contact_import = stored_import(campaign, text.encode())
    seen: list[int] = []
    original = storage._save_once

    def save_once(store, rows, needed):
        seen.append(ContactImport.objects.get(pk=contact_import.pk).processed_rows)
        return original(store, rows, needed)

    monkeypatch.setattr("campaigns.imports.storage._save_once", save_once)

    # when
    contact_import = run_import(contact_import_id=contact_import.pk)

    # then
    assert contact_import.state == ContactImport.State.DONE
    assert seen == [0, 100, 200]  # progress reported after each batch
    assert (
        contact_import.total_rows,
        contact_import.processed_rows,
        contact_import.created_count,
        contact_import.merged_count,
        contact_import.error_count,
    ) == (251, 251, 250, 0, 1)
    error = contact_import.row_errors.get()
    assert (error.row, error.field, error.value) == (252, "phone", "12345")
    assert contact_import.started_at <= contact_import.finished_at
    assert events == [
        {
            "partner": campaign.partner,
            "event_type": "import.completed",
            "payload": imports.import_summary(contact_import),
            "key": f"contact-import-{contact_import.pk}",
        }
    ]
    assert events[0]["payload"]["created"] == 250


def test_run_import_stores_the_rows_kept_with_warnings_across_batches(
    campaign, events, monkeypatch
) -> None:
    # given a file read in batches of two, three of whose five rows lack the first name
    monkeypatch.setattr("campaigns.imports.rows.BATCH_SIZE", 2)
    monkeypatch.setattr("campaigns.imports.storage.BATCH_SIZE", 2)
    text = "phone,first_name\n600000001,Ana\n600000002,\n600000003,\n600000004,Eva\n600000005,\n"
    contact_import = stored_import(campaign, text.encode())

    # when
    contact_import = run_import(contact_import_id=contact_import.pk)

    # then the report counts and names them, and so does the partner's event
    assert (contact_import.created_count, contact_import.flagged_count) == (5, 3)
    assert contact_import.missing_variables == {"first_name": 3}
    assert list(contact_import.row_warnings.values_list("row", "field", "value")) == [
        (3, "first_name", ""),
        (4, "first_name", ""),
        (6, "first_name", ""),
    ]
    payload = events[0]["payload"]
    assert (payload["flagged"], payload["missing_variables"]) == (3, {"first_name": 3})


def test_run_import_started_over_keeps_one_report_of_its_warnings(campaign, events) -> None:
    # given an import whose worker died after saving a warning
    contact_import = stored_import(campaign, b"phone\n600000001\n")
    ContactImport.objects.filter(pk=contact_import.pk).update(
        state=ContactImport.State.RUNNING,
        updated_at=timezone.now() - imports.STALE_AFTER - datetime.timedelta(seconds=1),
        flagged_count=1,
    )
    contact_import.row_warnings.create(row=2, field="first_name", message="old")

    contact_import = run_import(contact_import_id=contact_import.pk)

    assert contact_import.flagged_count == 1
    assert list(contact_import.row_warnings.values_list("row", "message")) == [
        (
            2,
            "Missing variable first_name, which the call template needs: the contact is "
            "kept, but it will not be called until it has a value.",
        )
    ]


def test_run_import_fails_with_the_reason_keeping_rows_before_a_broken_line(
    campaign, events, monkeypatch
) -> None:
    monkeypatch.setattr("campaigns.imports.decoding.MAX_LINE_CHARS", 100)
    text = "phone,note\n600123456,ok\n600123457," + "x" * 300 + "\n"
    contact_import = stored_import(campaign, text.encode())

    contact_import = run_import(contact_import_id=contact_import.pk)

    assert contact_import.state == ContactImport.State.FAILED
    assert contact_import.failure_reason.startswith("Row 3 ")
    assert (contact_import.created_count, contact_import.total_rows) == (1, 1)
    assert events[0]["payload"]["state"] == "failed"


def test_run_import_fails_on_an_unreadable_file(campaign, events) -> None:
    # given: the stored file is gone
    contact_import = stored_import(campaign, b"phone\n600123456\n")
    contact_import.file.storage.delete(contact_import.file.name)

    # when
    contact_import = run_import(contact_import_id=contact_import.pk)

    # then
    assert contact_import.state == ContactImport.State.FAILED
    assert contact_import.failure_reason
    assert contact_import.finished_at is not None
    assert events[0]["payload"]["failure_reason"] == contact_import.failure_reason


def test_run_import_fails_on_a_file_without_phones(campaign, events) -> None:
    contact_import = stored_import(campaign, b"name\nAna\n")

    contact_import = run_import(contact_import_id=contact_import.pk)

    assert contact_import.state == ContactImport.State.FAILED
    assert "name" in contact_import.failure_reason


def test_run_import_twice_imports_once(campaign, events) -> None:
    # given
    contact_import = stored_import(campaign, b"phone\n600123456\n12345\n")
    run_import(contact_import_id=contact_import.pk)

    # when
    again = run_import(contact_import_id=contact_import.pk)

    # then
    assert (again.state, again.created_count, again.error_count) == ("done", 1, 1)
    assert again.row_errors.count() == 1
    assert len(events) == 1


def test_run_import_does_not_touch_an_import_running_elsewhere(campaign, events) -> None:
    contact_import = stored_import(campaign, b"phone\n600123456\n")
    ContactImport.objects.filter(pk=contact_import.pk).update(state="running")

    contact_import = run_import(contact_import_id=contact_import.pk)

    assert contact_import.state == ContactImport.State.RUNNING
    assert not campaign.contacts.exists() and events == []


def test_run_import_starts_over_an_import_whose_worker_died(campaign, events) -> None:
    # given: a run that stopped reporting progress long ago, after storing an error
    contact_import = stored_import(campaign, b"phone\n600123456\n12345\n")
    contact_import.row_errors.create(row=3, field="phone", value="12345", message="x")
    stale = timezone.now() - imports.STALE_AFTER - datetime.timedelta(minutes=1)
    ContactImport.objects.filter(pk=contact_import.pk).update(
        state="running", updated_at=stale, processed_rows=2
    )

    # when
    contact_import = run_import(contact_import_id=contact_import.pk)

    # then
    assert (contact_import.state, contact_import.created_count) == ("done", 1)
    assert contact_import.row_errors.count() == 1


def test_import_contacts_task_runs_the_import(campaign, events) -> None:
    contact_import = stored_import(campaign, b"phone\n600123456\n")

    assert import_contacts_task(contact_import.pk) == {
        "state": "done",
        "rows": 1,
        "created": 1,
        "merged": 0,
        "rejected": 0,
    }


@pytest.mark.django_db(transaction=True)
def test_imports_at_the_same_time_create_each_contact_once(campaign) -> None:
    # given: two uploads of overlapping people, the same external ids and phones
    first = "phone,external_id,source\n" + "".join(
        f"6{index:08d},F-{index},first\n" for index in range(0, 3_000)
    )
    second = "phone,external_id,source\n" + "".join(
        f"6{index:08d},F-{index},second\n" for index in range(2_000, 5_000)
    )
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def upload(name: str, text: str) -> None:
        try:
            barrier.wait()
            results[name] = import_csv(campaign=campaign, file=csv_file(text))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure of a thread
            results[name] = exc
        finally:
            connections.close_all()

    # when
    threads = [
        threading.Thread(target=upload, args=(name, text))
        for name, text in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert all(not isinstance(result, Exception) for result in results.values()), results
    assert Contact.objects.filter(campaign=campaign).count() == 5_000
    created = sum(result.created for result in results.values())
    merged = sum(result.merged for result in results.values())
    assert (created, merged) == (5_000, 1_000)


@pytest.mark.django_db(transaction=True)
def test_run_import_outside_a_transaction_saves_in_a_thread_while_reading(
    campaign, events, monkeypatch
) -> None:
    # given
    monkeypatch.setattr("campaigns.imports.rows.BATCH_SIZE", 100)
    monkeypatch.setattr("campaigns.imports.storage.BATCH_SIZE", 100)
    text = "phone,external_id,first_name\n" + spanish_rows(1_000) + "12345,BAD-1,Eva\n"
    contact_import = stored_import(campaign, text.encode())
    switch_interval = sys.getswitchinterval()
    threads: set[str] = set()
    original = storage._save_once

    def save_once(store, rows, needed):
        threads.add(threading.current_thread().name)
        return original(store, rows, needed)

    monkeypatch.setattr("campaigns.imports.storage._save_once", save_once)

    # when
    contact_import = run_import(contact_import_id=contact_import.pk)

    # then
    assert (contact_import.state, contact_import.created_count) == ("done", 1_000)
    assert contact_import.row_errors.get().row == 1_002
    assert threads and threading.current_thread().name not in threads
    assert sys.getswitchinterval() == switch_interval


@pytest.mark.django_db(transaction=True)
def test_run_import_raises_what_the_writer_thread_raised(campaign, events, monkeypatch) -> None:
    # given: the database goes away at the third batch
    monkeypatch.setattr("campaigns.imports.rows.BATCH_SIZE", 100)
    monkeypatch.setattr("campaigns.imports.storage.BATCH_SIZE", 100)
    contact_import = stored_import(
        campaign, ("phone,external_id,first_name\n" + spanish_rows(1_000)).encode()
    )
    original = storage._save_once
    calls: list[int] = []

    def save_once(store, rows, needed):
        calls.append(len(rows))
        if len(calls) == 3:
            raise OperationalError("server closed the connection unexpectedly")
        return original(store, rows, needed)

    monkeypatch.setattr("campaigns.imports.storage._save_once", save_once)

    # when
    with pytest.raises(OperationalError):
        run_import(contact_import_id=contact_import.pk)

    # then: still claimed, for the task's retry once the claim is stale
    contact_import.refresh_from_db()
    assert contact_import.state == ContactImport.State.RUNNING
    assert contact_import.processed_rows == 200
    assert events == []


def test_seen_keys_never_forget_a_key(monkeypatch) -> None:
    # given: a filter past its set's size
    monkeypatch.setattr(_SeenKeys, "_SET_SIZE", 100)
    seen = _SeenKeys()
    keys = [f"+346{index:08d}" for index in range(5_000)]

    # when
    first = [seen.check_and_add(key) for key in keys]

    # then
    assert all(seen.check_and_add(key) for key in keys)
    assert sum(first) < 5  # false "seen" are rare


def test_run_import_fails_without_a_file(campaign, events) -> None:
    contact_import = ContactImportFactory(campaign=campaign, file_name="lost.csv")

    contact_import = run_import(contact_import_id=contact_import.pk)

    assert contact_import.state == ContactImport.State.FAILED
    assert contact_import.failure_reason == "The uploaded file could not be read; upload it again."
