"""The audit trail in the admin: readable, searchable, exportable and verifiable, and
never added to, changed or deleted, not even by a superuser."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.urls import reverse

from audit.models import AuditEntry
from audit.services import Action, Actor, record, subject_hash
from tests.factories import PartnerFactory

pytestmark = pytest.mark.django_db

LIST = reverse("admin:audit_auditentry_changelist")


def _entry(partner_id: int | None = None, **kwargs: object) -> AuditEntry:
    fields: dict = {
        "partner_id": partner_id,
        "object_type": "campaigns.contact",
        "object_id": "41",
        "details": {"reasons": ["outside_window"]},
    }
    fields.update(kwargs)
    return record(fields.pop("action", Action.CONTACT_SKIPPED), **fields)


def _streamed(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_a_superuser_cannot_add_change_or_delete_an_entry(admin_client) -> None:
    entry = _entry()
    change = reverse("admin:audit_auditentry_change", args=[entry.pk])
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])

    assert admin_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:audit_auditentry_add"), {}).status_code == 403
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    # The entry's page only shows it: no form to save, and a save is refused.
    page = admin_client.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(change, {"action": "contact.dialed"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).action == Action.CONTACT_SKIPPED


def test_the_list_offers_no_delete_action(admin_client) -> None:
    _entry()
    response = admin_client.get(LIST)

    assert response.status_code == 200
    action_form = response.context["action_form"]
    assert action_form is None or "delete_selected" not in dict(
        action_form.fields["action"].choices
    )
    refused = admin_client.post(
        LIST, {"action": "delete_selected", "_selected_action": [1], "post": "yes"}
    )
    assert refused.status_code in (200, 302) and AuditEntry.objects.count() == 1


def test_the_list_names_each_partner_in_one_query(admin_client) -> None:
    partners = [PartnerFactory(name=f"Partner {index}") for index in range(3)]
    for partner in partners:
        _entry(partner.pk)
    _entry(None)
    _entry(987654)  # a partner deleted since: its id alone
    admin_client.get(LIST)  # session and content types read once

    response = admin_client.get(LIST)

    shown = {row.pk: row.partner_name for row in response.context["cl"].result_list}
    assert sorted(name for name in shown.values() if name) == [p.name for p in partners]
    assert "#987654" in response.content.decode()


def test_the_list_finds_a_person_by_their_number_in_any_format(admin_client, settings) -> None:
    settings.DEFAULT_PHONE_REGION = "ES"
    mine = _entry(subject_phone="+34612345678")
    _entry(subject_phone="+34699999999")

    found = admin_client.get(LIST, {"q": "612 34 56 78"}).context["cl"].result_list
    by_object = admin_client.get(LIST, {"q": str(mine.object_id)}).context["cl"].result_list

    assert [entry.pk for entry in found] == [mine.pk]
    assert mine.subject == subject_hash("+34612345678")
    assert len(by_object) == 2  # both are about contact 41


def test_the_list_filters_by_action_partner_and_actor(admin_client) -> None:
    partner = PartnerFactory()
    staff = Actor("staff", "user:1", "ana", "203.0.113.9")
    wanted = _entry(partner.pk, action=Action.CAMPAIGN_PAUSED, actor=staff)
    _entry(partner.pk)
    _entry(None, action=Action.CAMPAIGN_PAUSED)

    listed = admin_client.get(
        LIST, {"action": "campaign.paused", "partner": str(partner.pk), "actor_type": "staff"}
    ).context["cl"]

    assert [entry.pk for entry in listed.result_list] == [wanted.pk]


def test_the_export_writes_the_filtered_list_as_csv(admin_client) -> None:
    _entry(action=Action.CAMPAIGN_PAUSED, details={"reason": "=cmd|' /C calc'!A0"})
    _entry()

    response = admin_client.get(
        reverse("admin:audit_auditentry_export"), {"format": "csv", "action": "campaign.paused"}
    )

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(_streamed(response))))
    assert len(rows) == 2
    _header, row = rows
    assert row[3] == "campaign.paused"
    # A JSON cell starting with "{" is no formula; the cell holds the text as written.
    assert json.loads(row[13]) == {"reason": "=cmd|' /C calc'!A0"}


def test_the_export_writes_json_lines_that_verify_again(admin_client) -> None:
    first, second = _entry(subject_phone="+34612345678"), _entry(PartnerFactory().pk)

    response = admin_client.get(reverse("admin:audit_auditentry_export"), {"format": "jsonl"})

    assert response["Content-Type"] == "application/jsonl"
    lines = [json.loads(line) for line in _streamed(response).splitlines()]
    assert [line["seq"] for line in lines] == [second.seq, first.seq]  # newest first
    assert lines[1]["hash"] == first.hash and lines[1]["subject"] == first.subject
    assert lines[0]["prev_hash"] == first.hash
    assert "612345678" not in _streamed(
        admin_client.get(reverse("admin:audit_auditentry_export"), {"format": "jsonl"})
    )


def test_the_export_refuses_an_unknown_format(admin_client) -> None:
    response = admin_client.get(reverse("admin:audit_auditentry_export"), {"format": "xml"})
    assert response.status_code == 400


def test_the_verify_page_says_intact_then_names_an_edited_entry(admin_client) -> None:
    for _ in range(3):
        _entry()
    url = reverse("admin:audit_auditentry_verify")

    intact = admin_client.get(url)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET object_id = '99' WHERE seq = 2")
    broken = admin_client.get(url)

    assert intact.status_code == 200 and intact.context["problems"] == []
    assert b'data-intact="true"' in intact.content
    assert [problem.seq for problem, _entry in broken.context["problems"]] == [2]
    assert b'data-intact="false"' in broken.content and b'data-seq="2"' in broken.content


def test_staff_without_the_view_permission_cannot_read_export_or_verify(
    client, django_user_model
) -> None:
    _entry()
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    client.force_login(user)

    for name in ("changelist", "export", "verify"):
        assert client.get(reverse(f"admin:audit_auditentry_{name}")).status_code == 403
