"""A call's recording: staff only, fetched with the account's credentials."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from django.urls import reverse

from calls.models import Call
from calls.telephony.sandbox import state as sandbox_state
from tests.factories import CallFactory, ContactFactory

RECORDING_SID = "RE" + "3" * 32

# The live server reads the test data from its own thread.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorded_call(campaign, live_server, settings) -> Call:
    settings.APP_URL = live_server.url
    settings.TELEPHONY_BACKEND = "sandbox"
    cache.set(sandbox_state.recording_key(RECORDING_SID), {"duration": 1}, 60)
    contact = ContactFactory(campaign=campaign, phone="+34600000001")
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.COMPLETED,
        from_number="+34910000000",
        to_number=contact.phone,
        recording_sid=RECORDING_SID,
        recording_url=f"{live_server.url}/sandbox/recordings/{RECORDING_SID}",
    )


def url(call: Call) -> str:
    return reverse("calls:recording-audio", kwargs={"call_id": call.pk})


def test_staff_hear_a_calls_recording(admin_client, recorded_call) -> None:
    response = admin_client.get(url(recorded_call))

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/x-wav"
    assert response.content.startswith(b"RIFF")
    assert response["Cache-Control"] == "private, no-store"


def test_the_recording_itself_is_not_public(recorded_call) -> None:
    assert requests.get(recorded_call.recording_url + ".wav", timeout=5).status_code == 401


def test_people_who_are_not_staff_are_sent_to_log_in(client, recorded_call) -> None:
    response = client.get(url(recorded_call))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_without_the_view_permission_are_refused(client, recorded_call, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)

    assert client.get(url(recorded_call)).status_code == 403


def test_a_recording_url_off_the_account_is_never_fetched(admin_client, recorded_call) -> None:
    Call.objects.filter(pk=recorded_call.pk).update(recording_url="https://attacker.example/steal")

    assert admin_client.get(url(recorded_call)).status_code == 404


def test_a_call_without_a_recording_answers_not_found(admin_client, recorded_call) -> None:
    Call.objects.filter(pk=recorded_call.pk).update(recording_url="")

    assert admin_client.get(url(recorded_call)).status_code == 404


def test_a_recording_while_twilio_is_not_answering_is_unavailable(
    admin_client, recorded_call, settings, closed_port
) -> None:
    settings.APP_URL = f"http://127.0.0.1:{closed_port}"
    Call.objects.filter(pk=recorded_call.pk).update(
        recording_url=f"{settings.APP_URL}/sandbox/recordings/{RECORDING_SID}"
    )

    response = admin_client.get(url(recorded_call))

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
