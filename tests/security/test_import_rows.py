"""Contact files built to lose rows without a word, and the uploads they leave behind.

Each row a file cannot give as it is gets a row error naming the row, field and value,
and the good rows of the same file are imported; an uploaded file is deleted once its
import has ended, keeping the report.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns import imports
from campaigns.models import Campaign, ContactImport, Partner
from tests.factories import CallTemplateFactory, CampaignFactory

pytestmark = pytest.mark.django_db


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
    return CampaignFactory(partner=api_partner, name="Rows", template=template)


def upload(client, campaign: Campaign, content: bytes):
    return client.post(
        f"/api/v1/campaigns/{campaign.pk}/contacts/",
        {"file": SimpleUploadedFile("contacts.csv", content, content_type="text/csv")},
        format="multipart",
    )


def phones(campaign: Campaign) -> list[str]:
    return sorted(campaign.contacts.values_list("phone", flat=True))


def errors_of(body: dict) -> list[tuple[int, str, str]]:
    return sorted((error["row"], error["field"], error["value"]) for error in body["errors"])


def test_a_nul_in_a_cell_rejects_its_row_only(api_client, api_campaign) -> None:
    content = b"phone,first_name\n600000701,Ana\n600000702,Be\x00a\n600000703,Carla\n"

    response = upload(api_client, api_campaign, content)

    assert response.status_code == 201, response.content
    assert errors_of(response.json()) == [(3, "first_name", "Be\x00a")]
    assert phones(api_campaign) == ["+34600000701", "+34600000703"]


def test_one_oversized_cell_rejects_its_row_and_the_rows_after_it_are_imported(
    api_client, api_campaign
) -> None:
    huge = "x" * 200_000  # over the csv module's 128 KiB a value, under a line's limit
    content = f"phone,first_name\n600000711,Ana\n600000712,{huge}\n600000713,Carla\n".encode()

    response = upload(api_client, api_campaign, content)

    assert response.status_code == 201, response.content
    [(row, field, value)] = errors_of(response.json())
    assert (row, field) == (3, "")
    assert value.startswith("600000712,xxx") and len(value) <= 1_000
    assert phones(api_campaign) == ["+34600000711", "+34600000713"]


def test_an_unterminated_quote_is_reported_where_it_began_and_the_rows_after_it_kept(
    api_client, api_campaign
) -> None:
    content = b'phone,first_name\n600000721,Ana\n600000722,"Bea\n600000723,Carla\n600000724,Dora\n'

    response = upload(api_client, api_campaign, content)

    assert response.status_code == 201, response.content
    assert errors_of(response.json()) == [(3, "", '600000722,"Bea')]
    assert response.json()["total_rows"] == 4
    assert phones(api_campaign) == ["+34600000721", "+34600000723", "+34600000724"]


def test_a_duplicate_external_id_with_another_phone_is_refused_not_merged_dropping_it(
    api_client, api_campaign
) -> None:
    content = (
        b"phone,external_id,first_name\n"
        b"600000731,E-1,Ana\n"
        b"600000732,E-1,Bea\n"
        b"600000733,E-2,Carla\n"
        b"600000731,E-1,Ana Mar\xc3\xada\n"  # the same person again: merged
    )

    response = upload(api_client, api_campaign, content)

    assert response.status_code == 201, response.content
    body = response.json()
    assert errors_of(body) == [(3, "phone", "+34600000732")]
    assert (body["created"], body["merged"], body["rejected"]) == (2, 1, 1)
    assert phones(api_campaign) == ["+34600000731", "+34600000733"]
    assert api_campaign.contacts.get(external_id="E-1").variables == {"first_name": "Ana María"}


def test_an_external_id_of_a_saved_contact_with_another_phone_is_refused(
    api_client, api_campaign
) -> None:
    imports.import_csv(campaign=api_campaign, file=io.BytesIO(b"phone,id\n600000741,E-9\n"))

    response = upload(api_client, api_campaign, b"phone,id\n600000742,E-9\n")

    assert response.status_code == 200, response.content  # nothing created
    assert errors_of(response.json()) == [(2, "phone", "+34600000742")]
    assert phones(api_campaign) == ["+34600000741"]


def test_a_single_contact_with_a_saved_external_id_and_another_phone_is_refused(
    api_client, api_campaign
) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"
    first = api_client.post(url, {"phone": "600000761", "external_id": "E-7"}, format="json")
    assert first.status_code == 201, first.content

    again = api_client.post(
        url, {"phone": "600000762", "external_id": "E-7"}, format="json", HTTP_ACCEPT_LANGUAGE="en"
    )

    assert again.status_code == 400, again.content
    [error] = again.json()["errors"]
    assert error["field"] == "phone"
    assert "E-7" in error["message"] and "+34600000761" in error["message"]
    assert phones(api_campaign) == ["+34600000761"]
    # the same person sent again (same phone) still merges, creating nothing twice
    same = api_client.post(url, {"phone": "600000761", "external_id": "E-7"}, format="json")
    assert same.status_code == 200, same.content


# --- Uploaded files -----------------------------------------------------------------------


def queue_upload(client, campaign, content, capture) -> ContactImport:
    with capture(execute=False):
        response = upload(client, campaign, content)
    assert response.status_code == 202, response.content
    return ContactImport.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize(
    ("content", "state"),
    [
        pytest.param(b"phone\n600000751\nnot a phone\n", "done", id="imported"),
        pytest.param(b"PK\x03\x04 a workbook", "failed", id="failed"),
    ],
)
def test_an_uploaded_file_is_deleted_once_imported_keeping_the_report(
    api_client, api_campaign, settings, django_capture_on_commit_callbacks, content, state
) -> None:
    # given: an upload queued for the background import, stored until it runs
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 0
    contact_import = queue_upload(
        api_client, api_campaign, content, django_capture_on_commit_callbacks
    )
    stored = contact_import.file.name
    storage = contact_import.file.storage
    assert storage.exists(stored)

    # when it runs to its end
    with django_capture_on_commit_callbacks(execute=True):
        done = imports.run_import(contact_import_id=contact_import.pk)

    # then the file is gone; the report stays
    assert done.state == state
    assert not storage.exists(stored)
    assert done.file.name == ""
    shown = api_client.get(f"/api/v1/imports/{done.pk}/").json()
    assert (shown["state"], shown["file_name"]) == (state, "contacts.csv")
    if state == "done":
        assert (shown["created_count"], shown["error_count"]) == (1, 1)
        rows = api_client.get(f"/api/v1/imports/{done.pk}/errors/").json()["results"]
        assert [(row["row"], row["value"]) for row in rows] == [(3, "not a phone")]
    else:
        assert shown["failure_reason"]


def test_an_upload_survives_a_run_that_dies_until_a_run_ends_the_import(
    api_client, api_campaign, settings, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given: a run whose worker dies halfway through the file
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 0
    contact_import = queue_upload(
        api_client, api_campaign, b"phone\n600000761\n", django_capture_on_commit_callbacks
    )
    stored = contact_import.file.name
    storage = contact_import.file.storage

    def dies(*args, **kwargs):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patched:
        patched.setattr("campaigns.imports.runs._read_csv", dies)
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(SystemExit):
            imports.run_import(contact_import_id=contact_import.pk)

    # then the file is kept for the run that starts over
    assert storage.exists(stored)
    ContactImport.objects.filter(pk=contact_import.pk).update(
        updated_at=contact_import.created_at - imports.STALE_AFTER * 2
    )

    # when a new run claims the stale import and ends it
    with django_capture_on_commit_callbacks(execute=True):
        done = imports.run_import(contact_import_id=contact_import.pk)

    # then the file goes, with the import done
    assert (done.state, done.created_count) == ("done", 1)
    assert not storage.exists(stored)
