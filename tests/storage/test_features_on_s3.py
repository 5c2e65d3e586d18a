"""Key tests of the features that store files, run again with media in a bucket of moto's
S3 server (the `s3` fixture): the same assertions hold on either storage. The tests, and
the fixtures they use, are taken from their own modules and collected here too."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from storages.backends.s3 import S3Storage

from tests.campaigns import test_imports, test_suppression_lists, test_views
from tests.privacy import conftest as privacy_fixtures
from tests.privacy import test_admin, test_api, test_export
from tests.s3 import S3Server
from tests.voices import test_clips

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("s3")]

RUN_AGAIN = {
    test_clips: [
        "bella",
        "test_render_clip_stores_audio_once_and_reuses_it",
        "test_clip_audio_is_served_with_type_length_and_cache_headers",
        "test_speech_for_line_plays_the_clip_when_it_can",
    ],
    test_imports: [
        "_english",
        "events",
        "test_create_import_stores_the_file_and_queues_the_task_after_commit",
        "test_run_import_imports_the_stored_file_with_progress_and_errors",
        "test_run_import_fails_on_an_unreadable_file",
        "test_run_import_twice_imports_once",
    ],
    test_views: [
        "api_template",
        "api_campaign",
        "test_contact_large_upload_is_imported_in_the_background",
    ],
    test_suppression_lists: ["robinson", "test_admin_upload_imports_in_the_background"],
    privacy_fixtures: ["media_root", "subject"],
    test_export: ["make_export", "test_export_holds_everything_about_the_number"],
    # The API's subject belongs to the API's partner (its `partner` fixture).
    test_api: ["partner", "_no_broker", "test_a_partner_exports_and_downloads_its_own_data"],
    test_admin: ["test_staff_export_and_download_their_file"],
}
for _module, _names in RUN_AGAIN.items():
    for _name in _names:
        globals()[_name] = getattr(_module, _name)


def test_the_tests_here_store_in_the_bucket(s3: S3Server) -> None:
    name = default_storage.save("probe.txt", io.BytesIO(b"x"))

    assert isinstance(default_storage._wrapped, S3Storage)
    assert s3.keys() == [name]
