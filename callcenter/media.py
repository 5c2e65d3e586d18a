"""Where media lives: the local folder (the embedded default) or an S3-compatible bucket.

Settings build the default storage with `s3_storage` when MEDIA_STORAGE=s3; the code
reaches media only through Django's storage API (`default_storage`, a FileField's
storage), so every file works on either. Nothing here imports an app.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from django.core.files.storage import Storage

FILESYSTEM = "filesystem"
S3 = "s3"
S3_BACKEND = "storages.backends.s3.S3Storage"
# A SigV4 presigned URL is valid at most 7 days (AWS: "Sharing objects with presigned
# URLs", docs.aws.amazon.com/AmazonS3/latest/userguide/ShareObjectPreSignedURL.html).
SIGNED_URL_MAX_SECONDS = 7 * 24 * 3600
# The longest a Twilio call lasts unless told otherwise: the Calls resource's TimeLimit
# defaults to 14400 s (twilio.com/docs/voice/api/call-resource#create-a-call-resource).
# A clip URL handed to a call must stay valid at least this long.
CALL_LIFETIME_SECONDS = 4 * 3600
# Objects up to this size are read into memory; larger ones spill to a temporary file
# (django-storages' S3File downloads into a SpooledTemporaryFile of this size).
READ_MEMORY_BYTES = 8 * 1024 * 1024


def s3_storage(
    *,
    bucket: str,
    endpoint_url: str = "",
    region: str = "us-east-1",
    access_key: str = "",
    secret_key: str = "",
    addressing_style: str = "auto",
    prefix: str = "",
) -> dict[str, Any]:
    """The STORAGES entry of a private bucket: no ACL sent (the bucket's own policy, which
    keeps it private), URLs only presigned, and a name taken is never overwritten.

    Empty keys leave boto3 to its own chain (an instance or pod role, AWS_* variables)."""
    return {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region,
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "location": prefix.strip("/"),
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 3600,
            "file_overwrite": False,
            "max_memory_size": READ_MEMORY_BYTES,
            "client_config": Config(
                s3={"addressing_style": None if addressing_style == "auto" else addressing_style},
                signature_version="s3v4",
                # Checksums only where S3 requires them: services that speak S3 (R2, MinIO,
                # Supabase Storage) do not all accept the CRC headers boto3 sends by
                # default since 1.36 (boto3's "Data Integrity Protections" notes).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        },
    }


def presigned_url(
    storage: Storage, name: str, *, seconds: int, parameters: dict[str, str] | None = None
) -> str:
    """A presigned GET URL of object ``name``, valid ``seconds`` from now; ``parameters``
    are S3's GetObject response overrides (ResponseContentType, ResponseCacheControl...).
    Only a bucket has such URLs: settings refuse CLIP_URLS=signed with a folder."""
    from storages.backends.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        raise TypeError(f"{type(storage).__name__} has no presigned URLs: MEDIA_STORAGE is not s3")
    return str(storage.url(name, parameters=parameters, expire=seconds))
