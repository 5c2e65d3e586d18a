"""media_archive and media_restore: the media storage, folder or bucket, to a tar archive
and back, the restore deleting what was written after the backup."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.processes import child_env
from tests.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["filesystem", "s3"])
def storage_kind(request, settings, tmp_path) -> str:
    """Each test runs on the media folder and on a bucket of moto's S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    else:
        settings.MEDIA_ROOT = tmp_path / "media"
    return request.param


def listing() -> dict[str, bytes]:
    from callcenter.media import stored_names

    names = list(stored_names(default_storage))
    result = {}
    for name in names:
        with default_storage.open(name, "rb") as file:
            result[name] = file.read()
    return result


def archive(path: Path) -> None:
    call_command("media_archive", str(path), stderr=StringIO())


def restore(path: Path) -> str:
    err = StringIO()
    call_command("media_restore", "--yes", str(path), stderr=err)
    return err.getvalue()


def test_a_restore_makes_the_storage_what_it_was_at_the_backup(
    storage_kind: str, tmp_path: Path
) -> None:
    # given a clip, an upload and an export in the storage, archived
    default_storage.save("clips/a.mp3", ContentFile(b"ID3 clip a"))
    default_storage.save("imports/2026/06/contacts.csv", ContentFile(b"phone\n600000001\n"))
    default_storage.save("private/subject-exports/x.zip", ContentFile(b"PK zip"))
    at_backup = listing()
    backup = tmp_path / "media.tar.gz"
    archive(backup)

    # when, after the backup, one file is deleted, one changed and one added
    default_storage.delete("clips/a.mp3")
    default_storage.delete("imports/2026/06/contacts.csv")
    default_storage.save("imports/2026/06/contacts.csv", ContentFile(b"changed"))
    default_storage.save("clips/after.mp3", ContentFile(b"ID3 written after"))
    said = restore(backup)

    # then the storage holds exactly what it held at the backup, byte for byte
    assert listing() == at_backup
    assert "1 " in said  # counts are printed
    # and a second restore changes nothing
    restore(backup)
    assert listing() == at_backup


def test_the_archive_holds_the_files_by_their_storage_names(
    storage_kind: str, tmp_path: Path
) -> None:
    default_storage.save("clips/a.mp3", ContentFile(b"ID3 clip a"))
    backup = tmp_path / "media.tar.gz"

    archive(backup)

    with tarfile.open(backup) as tar:
        assert tar.getnames() == ["clips/a.mp3"]
        assert tar.extractfile("clips/a.mp3").read() == b"ID3 clip a"  # type: ignore[union-attr]


def test_a_folders_tar_moves_into_a_bucket(s3: S3Server, tmp_path: Path) -> None:
    # given the archive deploy/backup.sh makes of a media folder (GNU tar of ".")
    folder = tmp_path / "media"
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "a.mp3").write_bytes(b"ID3 a")
    backup = tmp_path / "folder.media.tar.gz"
    subprocess.run(["tar", "--create", "--gzip", "--file", backup, "--directory", folder, "."])

    # when it is restored into the bucket
    restore(backup)

    # then the bucket holds its files
    assert s3.keys() == ["clips/a.mp3"]
    assert s3.read("clips/a.mp3") == b"ID3 a"


def test_a_restore_needs_yes_and_an_archive(storage_kind: str, tmp_path: Path) -> None:
    default_storage.save("clips/a.mp3", ContentFile(b"ID3"))
    not_a_tar = tmp_path / "x.tar.gz"
    not_a_tar.write_bytes(b"not a tar")

    with pytest.raises(CommandError, match="--yes"):
        call_command("media_restore", str(not_a_tar))
    with pytest.raises(CommandError):
        call_command("media_restore", "--yes", str(not_a_tar))
    with pytest.raises(CommandError):
        call_command("media_restore", "--yes", str(tmp_path / "missing.tar.gz"))
    assert list(listing()) == ["clips/a.mp3"]


def test_an_archive_with_a_file_outside_the_storage_is_refused(
    storage_kind: str, tmp_path: Path
) -> None:
    backup = tmp_path / "evil.tar.gz"
    with tarfile.open(backup, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))

    with pytest.raises(CommandError):
        restore(backup)
    assert not (tmp_path / "outside.txt").exists()


def test_archive_and_restore_stream_through_stdout_and_stdin(s3: S3Server, tmp_path) -> None:
    # As deploy/backup.sh runs them for a bucket: another process, the archive on a pipe.
    s3.client().put_object(Bucket=s3.bucket, Key="clips/a.mp3", Body=b"ID3 a")
    env = child_env(**s3.env())
    manage = [sys.executable, "manage.py"]

    archived = subprocess.run(
        [*manage, "media_archive", "-"], cwd=ROOT, env=env, capture_output=True, check=True
    )
    s3.client().put_object(Bucket=s3.bucket, Key="clips/after.mp3", Body=b"after")
    subprocess.run(
        [*manage, "media_restore", "--yes", "-"],
        cwd=ROOT,
        env=env,
        input=archived.stdout,
        capture_output=True,
        check=True,
    )

    assert s3.keys() == ["clips/a.mp3"]
