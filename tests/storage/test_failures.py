"""A media bucket that does not answer: each feature ends in a defined state (a <Say>
fallback, a 503 Twilio may retry, an import retried, an erasure's files deleted later)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from callcenter import media
from campaigns.models import ContactImport
from campaigns.tasks import import_contacts_task
from privacy.erasure import erase_subject
from privacy.tasks import FilesNotDeleted, delete_erased_files_task, delete_recordings_task
from tests.factories import VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from tests.privacy.conftest import PHONE, Subject
from tests.privacy.conftest import media_root as media_root
from tests.privacy.conftest import subject as subject
from tests.s3 import S3Server
from voices.clips import clip_url, render_clip, speech_for_line
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def bella(db) -> Voice:
    return VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")


@pytest.fixture
def bucket_down(s3: S3Server, closed_port: int, settings) -> Any:
    """Call it to point the media storage at an address where nothing answers (the same
    bucket name); call it with False to bring the bucket back."""

    def switch(down: bool = True) -> None:
        where = f"http://127.0.0.1:{closed_port}" if down else s3.endpoint_url
        gone = S3Server(endpoint_url=where, bucket=s3.bucket)
        settings.STORAGES = gone.settings()["STORAGES"]

    return switch


def test_a_clip_that_cannot_be_stored_is_spoken_with_say(fake_elevenlabs, bella, bucket_down):
    bucket_down()

    speech = speech_for_line(text="Hola.", voice=bella, language="es-ES")

    assert speech.is_fallback
    assert speech.fallback_reason == "provider_failed"
    clip = SpeechClip.objects.get()
    assert clip.status == SpeechClip.Status.FAILED
    assert clip.error_message.startswith("storage:")


def test_the_clip_view_answers_503_while_the_bucket_does_not(
    client, fake_elevenlabs, bella, bucket_down, settings
) -> None:
    clip = render_clip(text="Hola.", voice=bella)
    path = clip_url(clip).removeprefix(settings.APP_URL)
    bucket_down()

    response = client.get(path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    bucket_down(False)
    assert client.get(path).status_code == 200


def test_the_clip_view_answers_404_for_an_object_gone_from_the_bucket(
    client, s3, fake_elevenlabs, bella, settings
) -> None:
    clip = render_clip(text="Hola.", voice=bella)
    s3.client().delete_object(Bucket=s3.bucket, Key=clip.audio.name)

    assert client.get(clip_url(clip).removeprefix(settings.APP_URL)).status_code == 404


def test_an_import_whose_bucket_does_not_answer_is_retried_by_its_task(
    campaign, bucket_down
) -> None:
    # given a stored upload, and then the bucket gone
    contact_import = ContactImport(campaign=campaign, file_name="c.csv")
    contact_import.file.save("c.csv", ContentFile(b"phone\n600123456\n"), save=False)
    contact_import.save()
    bucket_down()

    # when the task runs, it raises what its task retries (after the claim is stale)
    with pytest.raises(media.BUCKET_ERRORS) as raised:
        import_contacts_task.run(contact_import.pk)

    assert isinstance(raised.value, import_contacts_task.autoretry_for)
    # and the import keeps its file, for the run that starts over
    contact_import.refresh_from_db()
    assert contact_import.state == ContactImport.State.RUNNING
    assert contact_import.file.name


def test_an_erasures_files_the_bucket_failed_to_delete_are_deleted_later(
    s3: S3Server,
    subject: Subject,
    bucket_down,
    django_capture_on_commit_callbacks,
    monkeypatch,
) -> None:
    theirs = {subject.personal_clip.audio.name, subject.prerendered_clip.audio.name}
    later: list[list[str]] = []
    monkeypatch.setattr(delete_erased_files_task, "delay", later.append)
    monkeypatch.setattr(delete_recordings_task, "delay", lambda *args: None)
    bucket_down()

    # when the erasure is done while the bucket does not answer
    with django_capture_on_commit_callbacks(execute=True):
        erase_subject(phone=PHONE, partner=subject.partner)

    # then the files are still there, and a task is queued to delete them
    assert theirs <= set(s3.keys())
    assert [set(names) for names in later] == [theirs]
    # which fails while the bucket is down (and is retried)...
    with pytest.raises(FilesNotDeleted):
        delete_erased_files_task.run(later[0])
    # ...and deletes them once it is back
    bucket_down(False)
    assert delete_erased_files_task.run(later[0]) == 2
    assert not theirs & set(s3.keys())
