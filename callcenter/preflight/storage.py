"""The check of the media storage: the folder or bucket that clips, uploads and exports
are written to takes a file and gives it back (and, with CLIP_URLS=signed, by a signed URL)."""

from __future__ import annotations

import uuid

import requests
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from callcenter import media
from callcenter.preflight.base import Finding, Status, _check

# What the check writes, and deletes at once.
PROBE_CONTENT = b"callcenter preflight\n"


@_check(gettext_noop("Media storage"))
def check_media_storage(*, timeout: float) -> Finding:
    """A small file is written to the media storage, read back and deleted: what a clip's
    rendering and an upload need (and a signed clip URL fetched, with CLIP_URLS=signed)."""
    where = _storage_description()
    name = f"preflight/{uuid.uuid4().hex}.txt"
    try:
        name = default_storage.save(name, ContentFile(PROBE_CONTENT))
        try:
            with default_storage.open(name, "rb") as probe:
                read = probe.read()
            signed = _signed_url_problem(name, timeout=timeout)
        finally:
            default_storage.delete(name)
    except media.STORAGE_ERRORS as exc:
        return Finding(
            Status.FAIL,
            _("%(storage)s does not take a file: %(error)s")
            % {"storage": where, "error": f"{type(exc).__name__}: {exc}"},
            _storage_action(),
        )
    if read != PROBE_CONTENT:
        return Finding(
            Status.FAIL,
            _("%(storage)s gave back something else than the file written.") % {"storage": where},
            _storage_action(),
        )
    if signed:
        return Finding(
            Status.FAIL,
            _("%(storage)s takes files, but its signed URLs fail: %(error)s")
            % {"storage": where, "error": signed},
            _(
                "Check S3_ENDPOINT_URL, S3_REGION and S3_ADDRESSING_STYLE (the host and "
                "region the URLs are signed for), or set CLIP_URLS=app."
            ),
        )
    if settings.MEDIA_STORAGE != media.S3:
        return Finding(
            Status.WARN,
            _(
                "%(storage)s takes files; only processes on this machine share it "
                "(clips, uploads and exports)."
            )
            % {"storage": where},
            _(
                "Set MEDIA_STORAGE=s3 and a bucket before running web or workers on more "
                "than one machine (docs/deploy.md, Media storage)."
            ),
        )
    return Finding(
        Status.OK,
        _("%(storage)s takes, gives back and deletes a file.") % {"storage": where},
    )


def _signed_url_problem(name: str, *, timeout: float) -> str:
    """With CLIP_URLS=signed, what is wrong with fetching ``name`` by a signed URL, as
    Twilio would fetch a clip ("" when it works or the URLs are not signed)."""
    if settings.CLIP_URLS != "signed":
        return ""
    url = media.presigned_url(default_storage, name, seconds=settings.CLIP_SIGNED_URL_SECONDS)
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200 or response.content != PROBE_CONTENT:
        return f"HTTP {response.status_code}"
    return ""


def _storage_description() -> str:
    if settings.MEDIA_STORAGE == media.S3:
        return _("Bucket %(bucket)s at %(endpoint)s") % {
            "bucket": settings.S3_BUCKET,
            "endpoint": settings.S3_ENDPOINT_URL or f"AWS S3 ({settings.S3_REGION})",
        }
    return _("Media folder %(folder)s") % {"folder": settings.MEDIA_ROOT}


def _storage_action() -> str:
    if settings.MEDIA_STORAGE == media.S3:
        return _(
            "Check S3_BUCKET, S3_ENDPOINT_URL, S3_REGION and the keys: the bucket must "
            "exist and the keys may get, put, delete and list its objects."
        )
    return _("Make MEDIA_ROOT (DATA_DIR/media) writable for web and worker.")
