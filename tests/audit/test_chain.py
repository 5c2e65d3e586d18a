"""The audit trail's chain: entries are numbered and chained in order, a subject is only a
keyed hash, and any edit, insertion or deletion made in the database shows."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from audit.models import AuditEntry, AuditHead
from audit.services import Action, Actor, Event, record, record_many, subject_hash, verify

pytestmark = pytest.mark.django_db


def _fill(count: int = 5) -> list[AuditEntry]:
    return [
        record(
            Action.CONTACT_SKIPPED,
            partner_id=7,
            subject_phone="+34600000001",
            object_type="campaigns.contact",
            object_id=index,
            details={"reasons": ["outside_window"]},
            rules_version="2026.11.1",
        )
        for index in range(count)
    ]


def test_entries_are_numbered_and_chained() -> None:
    first, second, third = _fill(3)
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.prev_hash == "" and second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (3, third.hash)
    assert verify() == (3, [])


def test_the_subject_is_a_keyed_hash_not_the_number(settings) -> None:
    (entry,) = _fill(1)
    assert entry.subject == subject_hash("+34600000001")
    assert "600000001" not in entry.subject
    settings.AUDIT_KEY = "another key altogether, 32 characters or more"
    assert subject_hash("+34600000001") != entry.subject


def test_record_many_writes_in_order_under_one_head() -> None:
    _fill(2)
    entries = record_many(
        [
            Event(Action.CONTACT_SELECTED, 1, object_id=n, actor=Actor("staff", "user:3", "ana"))
            for n in range(4)
        ]
    )
    assert [entry.seq for entry in entries] == [3, 4, 5, 6]
    assert AuditEntry.objects.get(seq=6).actor_name == "ana"
    assert verify() == (6, [])


def test_an_entry_rolled_back_with_its_decision_leaves_no_gap() -> None:
    _fill(2)

    def decide_then_fail() -> None:
        with transaction.atomic():
            _fill(1)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        decide_then_fail()
    _fill(1)
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]
    assert verify() == (3, [])


def _sql(statement: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_an_edit_made_in_the_database_breaks_the_chain_there() -> None:
    _fill(5)
    _sql("UPDATE audit_auditentry SET details = %s WHERE seq = 3", ['{"reasons": []}'])
    count, problems = verify()
    assert count == 5
    assert [(problem.seq) for problem in problems] == [3]


def test_a_deleted_entry_shows_as_missing_and_unchained() -> None:
    _fill(5)
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", [2])
    count, problems = verify()
    assert count == 4
    assert {problem.seq for problem in problems} == {3}
    assert len(problems) == 2  # a number missing, and a hash not chained to entry 1


def test_a_forged_entry_without_the_key_does_not_verify() -> None:
    entries = _fill(3)
    # Recomputing the hash is useless without AUDIT_KEY: a plain SHA-256 is not the HMAC.
    import hashlib

    forged = hashlib.sha256(b"forged").hexdigest()
    _sql(
        "UPDATE audit_auditentry SET action = %s, hash = %s WHERE seq = 3",
        ["contact.dialed", forged],
    )
    _sql("UPDATE audit_audithead SET hash = %s", [forged])
    assert entries[2].hash != forged
    assert [problem.seq for problem in verify()[1]] == [3]


def test_a_cut_tail_shows_against_the_head() -> None:
    _fill(4)
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", [4])
    assert [problem.seq for problem in verify()[1]] == [4]


def test_the_product_cannot_change_or_delete_an_entry() -> None:
    (entry,) = _fill(1)
    entry.action = Action.CONTACT_DIALED
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    assert AuditEntry._meta.default_permissions == ("view",)


def test_the_command_says_intact_or_names_the_broken_entry(capsys) -> None:
    _fill(3)
    call_command("verify_audit")
    assert "3" in capsys.readouterr().out
    _sql("UPDATE audit_auditentry SET object_id = %s WHERE seq = 2", ["99"])
    with pytest.raises(CommandError):
        call_command("verify_audit")
    assert "2" in capsys.readouterr().err


# Serialized rollback: a plain transactional test's flush recreates the content types with
# new ids, which the browser tests' serialized rollback (the next transactional tests, by
# file name) could then not restore over. This one leaves the database as they expect.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_writers_keep_one_chain() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(10):
                with transaction.atomic():
                    _fill(2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert verify() == (80, [])
