"""What the staff console's import page asks of campaigns.imports: a file checked as a whole
before it is stored, and a small file imported right after the commit."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from campaigns.imports import ImportFileError, check_csv, create_import
from campaigns.models import ContactImport
from campaigns.tasks import import_contacts_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


def test_check_csv_reads_up_to_the_first_row_and_rewinds() -> None:
    # given a file whose second row is broken beyond reading
    file = io.BytesIO(b"sep=;\nTel\xc3\xa9fono;nombre\n612345678;Ana\n" + b'"x' * 10)
    file.seek(6)

    # when
    check_csv(file)

    # then the import checks the rows; the file is where it was
    assert file.tell() == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"nombre,email\nAna,a@example.com\n", "It names: nombre, email."),
        (b"phone\n\n\n", "no contacts in them"),
        (b"\xff\xfeA\x00", "one of them the phone"),  # UTF-16: read, but no phone column
    ],
)
def test_check_csv_refuses_a_file_that_cannot_be_imported(content: bytes, message: str) -> None:
    file = io.BytesIO(content)

    with pytest.raises(ImportFileError) as refusal:
        check_csv(file)

    assert message in refusal.value.message
    assert file.tell() == 0


def test_create_import_run_now_imports_after_commit_without_the_worker(
    campaign, admin_user, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given
    queued: list[int] = []
    monkeypatch.setattr(import_contacts_task, "delay", queued.append)
    upload = SimpleUploadedFile("a.csv", b"phone,first_name\n600123456,Ana\nbad,Eva\n")

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        contact_import = create_import(campaign=campaign, file=upload, by=admin_user, run_now=True)
        state_before_commit = ContactImport.objects.get(pk=contact_import.pk).state

    # then
    contact_import.refresh_from_db()
    assert len(callbacks) == 2  # the import, then the deletion of its upload
    assert queued == []
    assert state_before_commit == ContactImport.State.QUEUED
    assert (contact_import.state, contact_import.created_count, contact_import.error_count) == (
        ContactImport.State.DONE,
        1,
        1,
    )
    assert list(contact_import.row_errors.values_list("row", "value")) == [(3, "bad")]
