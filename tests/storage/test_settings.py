"""The media settings: MEDIA_STORAGE, S3_* and CLIP_URLS, read and refused as the other
settings are (tests/callcenter/test_settings.py's way: settings.py run afresh)."""

from __future__ import annotations

import pytest

from tests.callcenter.test_settings import load_settings, settings_error


@pytest.fixture(autouse=True)
def _no_media_variables(monkeypatch) -> None:
    for name in (
        "MEDIA_STORAGE",
        "S3_BUCKET",
        "S3_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ADDRESSING_STYLE",
        "S3_PREFIX",
        "CLIP_URLS",
        "CLIP_SIGNED_URL_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_media_defaults_to_the_folder_and_the_clip_view(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path)

    assert settings["MEDIA_STORAGE"] == "filesystem"
    assert settings["STORAGES"]["default"]["BACKEND"].endswith("FileSystemStorage")
    assert settings["MEDIA_ROOT"] == tmp_path / "media"
    assert settings["CLIP_URLS"] == "app"
    assert settings["CLIP_SIGNED_URL_SECONDS"] == 604800


def test_s3_media_builds_a_private_bucket_storage(monkeypatch, tmp_path) -> None:
    settings = load_settings(
        monkeypatch,
        tmp_path,
        MEDIA_STORAGE="s3",
        S3_BUCKET="calls-media",
        S3_ENDPOINT_URL="https://abc123.r2.cloudflarestorage.com/",
        S3_REGION="auto",
        S3_ACCESS_KEY_ID="key-id",
        S3_SECRET_ACCESS_KEY="secret",
        S3_ADDRESSING_STYLE="path",
        S3_PREFIX="/production/",
        CLIP_URLS="signed",
        CLIP_SIGNED_URL_SECONDS="86400",
    )

    default = settings["STORAGES"]["default"]
    options = default["OPTIONS"]
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert (options["bucket_name"], options["region_name"], options["location"]) == (
        "calls-media",
        "auto",
        "production",
    )
    assert options["endpoint_url"] == "https://abc123.r2.cloudflarestorage.com"
    assert (options["access_key"], options["secret_key"]) == ("key-id", "secret")
    assert options["default_acl"] is None
    assert options["querystring_auth"] is True
    assert options["file_overwrite"] is False
    assert options["client_config"].s3 == {"addressing_style": "path"}
    assert options["client_config"].signature_version == "s3v4"
    assert (settings["CLIP_URLS"], settings["CLIP_SIGNED_URL_SECONDS"]) == ("signed", 86400)


def test_s3_media_without_keys_leaves_boto3_to_its_role(monkeypatch, tmp_path) -> None:
    settings = load_settings(monkeypatch, tmp_path, MEDIA_STORAGE="s3", S3_BUCKET="b")

    options = settings["STORAGES"]["default"]["OPTIONS"]
    assert (options["access_key"], options["secret_key"], options["endpoint_url"]) == (
        None,
        None,
        None,
    )
    assert options["client_config"].s3 == {"addressing_style": None}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"MEDIA_STORAGE": "s3"}, "S3_BUCKET: must name the bucket when MEDIA_STORAGE=s3"),
        ({"MEDIA_STORAGE": "bucket"}, "MEDIA_STORAGE: must be one of filesystem, s3"),
        ({"CLIP_URLS": "signed"}, "CLIP_URLS: signed needs MEDIA_STORAGE=s3"),
        ({"CLIP_URLS": "cdn"}, "CLIP_URLS: must be one of app, signed"),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "CLIP_SIGNED_URL_SECONDS": "604801"},
            "CLIP_SIGNED_URL_SECONDS: must be at most 604800",
        ),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "CLIP_SIGNED_URL_SECONDS": "600"},
            "CLIP_SIGNED_URL_SECONDS: must be at least 14400",
        ),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_ADDRESSING_STYLE": "dns"},
            "S3_ADDRESSING_STYLE: must be one of auto, path, virtual",
        ),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_ENDPOINT_URL": "minio:9000"},
            "S3_ENDPOINT_URL: must be an absolute http/https URL",
        ),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_ACCESS_KEY_ID": "id"},
            "S3_SECRET_ACCESS_KEY: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together",
        ),
    ],
)
def test_bad_media_settings_are_refused_naming_the_variable(
    monkeypatch, tmp_path, variables, named
) -> None:
    assert named in settings_error(monkeypatch, tmp_path, **variables)
