"""Where media lives: the local folder (the embedded default) or an S3-compatible bucket.

Settings build the default storage with `s3_storage` when MEDIA_STORAGE=s3; the code
reaches media only through Django's storage API (`default_storage`, a FileField's
storage), so every file works on either. Nothing here imports an app.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import File
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
# What a bucket's storage raises when the bucket does not answer (BotoCoreError: timeouts,
# refused connections, after botocore's own retries) or answers an error other than a
# missing object (ClientError: 5xx, SlowDown, AccessDenied); django-storages turns a
# missing object into FileNotFoundError. A folder raises OSError for all of these.
BUCKET_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError, *BUCKET_ERRORS)


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
    # Imported here, not with the module: settings import this module in every process,
    # and botocore's config (urllib3 and its compat layer) adds some 50 ms to each start on
    # the folder, which never needs it.
    from botocore.config import Config

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


def open_to_stream(storage: Storage, name: str) -> IO[bytes]:
    """``name`` opened for one pass from start to end, as a response streams it.

    A bucket's object is read by one GET, its body streamed as it arrives: the storage's
    own file first asks for the object's size (a HEAD) and then downloads it whole through
    boto3's transfer manager, which took twice the CPU to serve a clip (11-13 ms against
    5-6 ms for a 40 KB clip, measured on moto's server). A missing object raises
    FileNotFoundError, as a folder's does; a bucket that does not answer, BUCKET_ERRORS."""
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name

    if not isinstance(storage, S3Storage):
        return storage.open(name, "rb")
    try:
        body = storage.bucket.Object(storage._normalize_name(clean_name(name))).get()["Body"]
    except ClientError as exc:
        # GetObject's error for a key that is not there (docs.aws.amazon.com/AmazonS3/
        # latest/API/API_GetObject.html, "Errors": NoSuchKey).
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise FileNotFoundError(name) from exc
        raise
    stream: IO[bytes] = body
    return stream


# --- Backups: the storage to a tar archive and back -------------------------------------


@dataclass
class Restored:
    """What `restore_archive` did: files added, replaced, left (already equal), deleted."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    deleted: int = 0


def stored_names(storage: Storage, folder: str = "") -> Iterator[str]:
    """Every file's name in ``storage`` under ``folder``, depth first (an absent folder
    holds none). Through listdir, which a folder and a bucket both answer."""
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for file in sorted(files):
        yield posixpath.join(folder, file) if folder else file
    for sub in sorted(folders):
        yield from stored_names(storage, posixpath.join(folder, sub) if folder else sub)


def write_archive(storage: Storage, output: IO[bytes]) -> int:
    """Write every file of ``storage`` into ``output`` as a gzipped tar archive (names as
    the storage has them, modification times kept); the number of files."""
    count = 0
    with tarfile.open(fileobj=output, mode="w|gz") as archive:
        for name in stored_names(storage):
            with storage.open(name, "rb") as file:
                info = tarfile.TarInfo(name)
                info.size = storage.size(name)
                info.mtime = int(storage.get_modified_time(name).timestamp())
                info.mode = 0o600
                archive.addfile(info, file)
            count += 1
    return count


def restore_archive(storage: Storage, source: IO[bytes]) -> Restored:
    """Make ``storage`` hold exactly the files of the archive ``source`` (written by
    `write_archive`): missing ones added, changed ones replaced, and every file that is not
    in the archive (one written after the backup) deleted."""
    done = Restored()
    kept: set[str] = set()
    with tarfile.open(fileobj=source, mode="r|*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            name = _archived_name(member.name)
            content = archive.extractfile(member)
            if content is None:
                continue
            kept.add(name)
            with tempfile.SpooledTemporaryFile(max_size=READ_MEMORY_BYTES) as copy:
                digest = _copy_hashing(content, copy)
                if storage.exists(name):
                    with storage.open(name, "rb") as current:
                        if _copy_hashing(current, None) == digest:
                            done.unchanged += 1
                            continue
                    storage.delete(name)
                    done.replaced += 1
                else:
                    done.added += 1
                copy.seek(0)
                saved = storage.save(name, File(copy, name=posixpath.basename(name)))
            if saved != name:
                raise RuntimeError(f"{name} was stored as {saved}: is another process writing?")
    for name in list(stored_names(storage)):
        if name not in kept:
            storage.delete(name)
            done.deleted += 1
    return done


def _copy_hashing(source: IO[bytes], target: IO[bytes] | None) -> str:
    """Copy ``source`` into ``target`` (if any) a block at a time; its SHA-256."""
    digest = hashlib.sha256()
    while block := source.read(1024 * 1024):
        digest.update(block)
        if target is not None:
            target.write(block)
    return digest.hexdigest()


def _archived_name(name: str) -> str:
    """A member's name as a storage name: relative, normalised ("./clips/a.mp3", which
    GNU tar writes for a folder's files, is "clips/a.mp3"); never outside the storage."""
    clean = posixpath.normpath(name.lstrip("/"))
    if clean in ("", ".") or clean.startswith("../"):
        raise ValueError(f"the archive holds a file outside the media storage: {name}")
    return clean
