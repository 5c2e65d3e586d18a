"""The audit trail in the partner API: read, filtered and exported, each partner its own
entries only; nothing can be written to it."""

from __future__ import annotations

import csv
import datetime
import io
import json

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Action, Actor, record, subject_hash

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/"


def _entry(partner_id: int | None, **kwargs: object) -> AuditEntry:
    fields: dict = {"object_type": "campaigns.contact", "object_id": "41"}
    fields.update(kwargs)
    return record(fields.pop("action", Action.CONTACT_SKIPPED), partner_id=partner_id, **fields)


def _streamed(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_a_partner_lists_its_own_entries_only(api_client, api_partner, other_api_partner) -> None:
    mine = _entry(api_partner.pk, subject_phone="+34612345678", details={"reasons": ["dnc"]})
    _entry(other_api_partner.pk)
    _entry(None)

    response = api_client.get(URL)

    assert response.status_code == 200
    assert [row["seq"] for row in response.data["results"]] == [mine.seq]
    row = response.data["results"][0]
    assert row["subject"] == subject_hash("+34612345678") and row["hash"] == mine.hash
    assert row["details"] == {"reasons": ["dnc"]} and row["partner_id"] == api_partner.pk


def test_another_partners_entry_is_not_found(api_client, other_api_partner) -> None:
    theirs = _entry(other_api_partner.pk)

    response = api_client.get(f"{URL}{theirs.seq}/")

    assert response.status_code == 404


def test_staff_read_every_entry(staff_api_client, api_partner) -> None:
    _entry(api_partner.pk)
    platform = _entry(None)

    response = staff_api_client.get(URL)
    one = staff_api_client.get(f"{URL}{platform.seq}/")

    assert response.data["count"] == 2
    assert one.status_code == 200 and one.data["partner_id"] is None


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nothing_can_be_written(api_client, staff_api_client, api_partner, method) -> None:
    entry = _entry(api_partner.pk)
    for client in (api_client, staff_api_client):
        url = URL if method == "post" else f"{URL}{entry.seq}/"
        response = getattr(client, method)(url, {"action": "contact.dialed"}, format="json")
        assert response.status_code == 405, (client, method)
    assert AuditEntry.objects.get(pk=entry.pk).action == Action.CONTACT_SKIPPED
    assert AuditEntry.objects.count() == 1


def test_the_list_filters_by_phone_action_object_and_time(api_client, api_partner) -> None:
    about_her = _entry(api_partner.pk, subject_phone="+34612345678")
    paused = _entry(
        api_partner.pk,
        action=Action.CAMPAIGN_PAUSED,
        object_type="campaigns.campaign",
        object_id="7",
        actor=Actor("staff", "user:1", "ana"),
    )
    AuditEntry.objects.filter(pk=about_her.pk).update(
        at=timezone.now() - datetime.timedelta(days=2)
    )

    def seqs(**params: str) -> list[int]:
        response = api_client.get(URL, params)
        assert response.status_code == 200, response.data
        return [row["seq"] for row in response.data["results"]]

    assert seqs(phone="612 34 56 78") == [about_her.seq]
    assert seqs(action="campaign.paused") == [paused.seq]
    assert seqs(object_type="campaigns.campaign", object_id="7") == [paused.seq]
    assert seqs(actor_type="staff") == [paused.seq]
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    assert seqs(since=since) == [paused.seq]
    assert seqs(until=since) == [about_her.seq]


def test_a_time_with_any_iso_offset_filters_the_list_and_the_export(
    api_client, api_partner
) -> None:
    # ISO 8601 allows offsets PostgreSQL refuses (beyond 15:59): the schema test's
    # 3600-10-28T00:00:00+16:58 made the export answer 500. Times are read in UTC now.
    entry = _entry(api_partner.pk)
    for path in (URL, URL + "export/"):
        response = api_client.get(path, {"since": "2000-01-01T00:00:00+16:58"})
        assert response.status_code == 200
    response = api_client.get(URL, {"until": "3600-10-28T00:00:00+16:58"})
    assert [row["seq"] for row in response.data["results"]] == [entry.seq]


def test_a_phone_that_is_no_number_is_a_field_error(api_client) -> None:
    response = api_client.get(URL, {"phone": "not a number"})

    assert response.status_code == 400
    assert response.data["errors"][0]["field"] == "phone"


def test_the_export_writes_csv_and_json_lines_of_the_partners_entries(
    api_client, api_partner, other_api_partner
) -> None:
    first = _entry(api_partner.pk, subject_phone="+34612345678", details={"reason": "=1+1"})
    second = _entry(api_partner.pk, action=Action.CAMPAIGN_STARTED)
    _entry(other_api_partner.pk)

    as_csv = api_client.get(f"{URL}export/", {"format": "csv"})
    as_jsonl = api_client.get(f"{URL}export/", {"format": "jsonl"})
    filtered = api_client.get(f"{URL}export/", {"format": "jsonl", "action": "campaign.started"})

    assert as_csv.status_code == 200 and as_csv["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(_streamed(as_csv))))
    assert [row[0] for row in rows[1:]] == [str(second.seq), str(first.seq)]
    assert rows[2][5] == api_partner.name and rows[2][6] == first.subject
    assert as_jsonl["Content-Type"] == "application/jsonl"
    lines = [json.loads(line) for line in _streamed(as_jsonl).splitlines()]
    assert [line["seq"] for line in lines] == [second.seq, first.seq]
    assert lines[1]["details"] == {"reason": "=1+1"} and lines[1]["hash"] == first.hash
    assert "612345678" not in _streamed(api_client.get(f"{URL}export/", {"format": "jsonl"}))
    assert [json.loads(line)["seq"] for line in _streamed(filtered).splitlines()] == [second.seq]


def test_the_export_refuses_a_format_it_does_not_offer(api_client) -> None:
    response = api_client.get(f"{URL}export/", {"format": "xlsx"})

    assert response.status_code == 400
    assert response.data["errors"][0]["field"] == "format"


def test_the_schema_documents_the_trail_read_only(staff_api_client) -> None:
    schema = staff_api_client.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    ).json()

    assert set(schema["paths"][URL]) == {"get"}
    assert set(schema["paths"][f"{URL}{{seq}}/"]) == {"get"}
    export = schema["paths"][f"{URL}export/"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv", "application/jsonl"}
