"""The preflight line of the media storage: the folder or the bucket takes a file."""

from __future__ import annotations

import pytest

from callcenter.preflight import Status, check_media_storage
from tests.s3 import S3Server

pytestmark = pytest.mark.django_db


def test_a_bucket_that_takes_a_file_is_ok_and_keeps_nothing(s3: S3Server) -> None:
    result = check_media_storage(timeout=5)

    assert result.status == Status.OK, result.detail
    assert s3.bucket in result.detail
    assert s3.keys() == []


def test_signed_clip_urls_are_fetched_too(s3: S3Server, settings) -> None:
    settings.CLIP_URLS = "signed"

    assert check_media_storage(timeout=5).status == Status.OK


def test_signed_urls_that_cannot_be_fetched_fail_naming_them(
    s3: S3Server, settings, closed_port
) -> None:
    # given a bucket whose URLs lead where nothing answers (a custom domain of no server)
    settings.CLIP_URLS = "signed"
    default = settings.STORAGES["default"]
    options = {
        **default["OPTIONS"],
        "custom_domain": f"127.0.0.1:{closed_port}",
        "url_protocol": "http:",
    }
    settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": options}}

    result = check_media_storage(timeout=1)

    assert result.status == Status.FAIL
    assert "ConnectionError" in result.detail
    assert "CLIP_URLS=app" in result.action
    assert s3.keys() == []


def test_a_bucket_that_does_not_exist_fails_naming_it(s3: S3Server, settings) -> None:
    missing = S3Server(endpoint_url=s3.endpoint_url, bucket="no-such-bucket")
    for name, value in missing.settings().items():
        setattr(settings, name, value)

    result = check_media_storage(timeout=5)

    assert result.status == Status.FAIL
    assert "no-such-bucket" in result.detail
    assert "NoSuchBucket" in result.detail
    assert "S3_BUCKET" in result.action


def test_a_bucket_that_does_not_answer_fails(s3: S3Server, closed_port, settings) -> None:
    gone = S3Server(endpoint_url=f"http://127.0.0.1:{closed_port}", bucket=s3.bucket)
    for name, value in gone.settings().items():
        setattr(settings, name, value)

    result = check_media_storage(timeout=1)

    assert result.status == Status.FAIL
    assert "EndpointConnectionError" in result.detail


def test_the_media_folder_warns_that_only_this_machine_shares_it(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"

    result = check_media_storage(timeout=1)

    assert result.status == Status.WARN
    assert "MEDIA_STORAGE=s3" in result.action
    assert list((tmp_path / "media" / "preflight").iterdir()) == []
