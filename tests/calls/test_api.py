"""The partner API's calls: each partner's own, filtered, by cursor; and their recordings."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from calls.models import AnsweredBy, Call, Turn
from calls.telephony.sandbox import state as sandbox_state
from campaigns.models import Campaign, Partner, PartnerMember
from tests.factories import CallFactory, CampaignFactory

pytestmark = pytest.mark.django_db

RECORDING_SID = "RE" + "4" * 32


@pytest.fixture
def spring(api_partner: Partner) -> Campaign:
    return CampaignFactory(partner=api_partner, name="Spring")


@pytest.fixture
def autumn(api_partner: Partner) -> Campaign:
    return CampaignFactory(partner=api_partner, name="Autumn")


@pytest.fixture
def rival(other_api_partner: Partner) -> Campaign:
    return CampaignFactory(partner=other_api_partner, name="Rival")


def completed_call(campaign: Campaign, **fields: Any) -> Call:
    """A completed call to a new contact of ``campaign``, known by the partner's own id."""
    return CallFactory(
        contact__campaign=campaign,
        contact__from_crm=True,
        **{"status": Call.Status.COMPLETED, **fields},
    )


def add_turns(call: Call, count: int) -> None:
    start = timezone.now()
    Turn.objects.bulk_create(
        Turn(
            call=call,
            sequence=index,
            role=Turn.Role.AGENT if index % 2 else Turn.Role.CALLER,
            text=f"line {index}",
            started_at=start + datetime.timedelta(seconds=index),
            model_ms=300 if index % 2 else None,
            speech_ms=120 if index % 2 else None,
        )
        for index in range(1, count + 1)
    )


def jwt_client(partner: Partner) -> APIClient:
    user = PartnerMember.objects.get(partner=partner).user
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def ids(response) -> list[int]:
    return [call["id"] for call in response.json()["results"]]


# --- List and detail ---------------------------------------------------------------------


def test_calls_list_shows_the_partners_own_calls_newest_first(api_client, spring, rival) -> None:
    # given
    older = completed_call(spring)
    newer = completed_call(spring)
    completed_call(rival)

    # when
    response = api_client.get("/api/v1/calls/")

    # then
    assert response.status_code == 200
    assert ids(response) == [newer.pk, older.pk]
    row = response.json()["results"][0]
    assert row["campaign"] == spring.pk
    assert row["contact"]["external_id"] == newer.contact.external_id
    assert "turns" not in row and "summary" not in row


def test_calls_list_is_the_same_with_the_partner_users_jwt(api_partner, spring, rival) -> None:
    mine = completed_call(spring)
    completed_call(rival)

    response = jwt_client(api_partner).get("/api/v1/calls/")

    assert response.status_code == 200
    assert ids(response) == [mine.pk]


def test_staff_see_calls_across_partners(staff_api_client, spring, rival) -> None:
    mine, theirs = completed_call(spring), completed_call(rival)

    response = staff_api_client.get("/api/v1/calls/")

    assert ids(response) == [theirs.pk, mine.pk]
    assert staff_api_client.get(f"/api/v1/calls/{mine.pk}/").status_code == 200


def test_another_partners_call_is_not_found(api_client, other_api_client, spring) -> None:
    call = completed_call(spring)

    response = other_api_client.get(f"/api/v1/calls/{call.pk}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert other_api_client.get("/api/v1/calls/").json()["results"] == []
    assert api_client.get(f"/api/v1/calls/{call.pk}/").status_code == 200


def test_calls_cannot_be_written(api_client, spring) -> None:
    call = completed_call(spring)

    assert api_client.post("/api/v1/calls/", {}, format="json").status_code == 405
    assert api_client.delete(f"/api/v1/calls/{call.pk}/").status_code == 405
    assert Call.objects.filter(pk=call.pk).exists()


def test_call_detail_has_transcript_outcome_price_and_recording_link(api_client, spring) -> None:
    # given an answered call with a transcript, an extracted outcome and a recording
    call = completed_call(
        spring,
        answered_by=AnsweredBy.HUMAN,
        duration_seconds=42,
        price=Decimal("0.01300"),
        price_unit="USD",
        outcome={"confirmed": True, "extraction_raw": "{...}"},
        summary="Confirmed the appointment.",
        recording_sid=RECORDING_SID,
        recording_url=f"https://api.twilio.com/2010-04-01/Recordings/{RECORDING_SID}",
        recording_seconds=40,
    )
    add_turns(call, 2)

    # when
    detail = api_client.get(f"/api/v1/calls/{call.pk}/").json()

    # then
    assert detail["answered_by"] == "human"
    assert detail["duration_seconds"] == 42
    assert (detail["price"], detail["price_unit"]) == ("0.01300", "USD")
    assert detail["outcome"] == {"confirmed": True}  # the model's raw answer stays with staff
    assert detail["summary"] == "Confirmed the appointment."
    assert detail["recording_url"] == f"http://testserver/api/v1/calls/{call.pk}/recording/"
    assert [(turn["speaker"], turn["text"]) for turn in detail["turns"]] == [
        ("agent", "line 1"),
        ("caller", "line 2"),
    ]
    assert detail["turns"][0]["model_ms"] == 300 and detail["turns"][0]["speech_ms"] == 120


def test_call_detail_without_recording_has_no_recording_link(api_client, spring) -> None:
    call = completed_call(spring)

    assert api_client.get(f"/api/v1/calls/{call.pk}/").json()["recording_url"] is None


# --- Filters -----------------------------------------------------------------------------


def test_calls_filter_by_campaign(api_client, spring, autumn) -> None:
    wanted = completed_call(autumn)
    completed_call(spring)

    response = api_client.get("/api/v1/calls/", {"campaign": autumn.pk})

    assert ids(response) == [wanted.pk]


def test_calls_filter_by_another_partners_campaign_is_refused(api_client, rival) -> None:
    completed_call(rival)

    response = api_client.get("/api/v1/calls/", {"campaign": rival.pk})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "campaign"


def test_calls_filter_by_statuses(api_client, spring) -> None:
    busy = completed_call(spring, status=Call.Status.BUSY)
    unanswered = completed_call(spring, status=Call.Status.NO_ANSWER)
    completed_call(spring, status=Call.Status.COMPLETED)

    response = api_client.get("/api/v1/calls/?status=busy&status=no-answer")

    assert ids(response) == [unanswered.pk, busy.pk]


def test_calls_filter_by_outcome_field(api_client, spring) -> None:
    opted_out = completed_call(spring, outcome={"opted_out": True})
    completed_call(spring, outcome={"opted_out": False})
    completed_call(spring, outcome={})

    response = api_client.get("/api/v1/calls/", {"outcome": "opted_out"})

    assert ids(response) == [opted_out.pk]


@pytest.mark.parametrize("flag", ["504870710175326", "0", "opted-out", "a b", "x" * 101])
def test_calls_filter_by_outcome_refuses_what_cannot_be_a_fields_name(
    api_client, spring, flag
) -> None:
    # A key of digits would be read by PostgreSQL as an array index (a 500 before).
    completed_call(spring, outcome={"opted_out": True})

    response = api_client.get("/api/v1/calls/", {"outcome": flag})

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["outcome"]


def test_a_contacts_history_lists_its_calls_both_ways(api_client, spring) -> None:
    # given: we called the contact, and it rang us back
    ours = completed_call(spring, status=Call.Status.NO_ANSWER)
    contact = ours.contact
    theirs = CallFactory(
        campaign=spring,
        contact=contact,
        direction=Call.Direction.INBOUND,
        status=Call.Status.COMPLETED,
        provider_sid="CA" + "7" * 32,
        from_number=contact.phone,
        to_number="+34910000000",
    )
    completed_call(spring)

    # when
    history = api_client.get("/api/v1/calls/", {"contact": contact.pk})
    inbound = api_client.get("/api/v1/calls/", {"direction": "inbound"})

    # then
    assert ids(history) == [theirs.pk, ours.pk]
    rows = history.json()["results"]
    assert [(row["direction"], row["attempt"]) for row in rows] == [
        ("inbound", None),
        ("outbound", 1),
    ]
    assert (rows[0]["from_number"], rows[0]["to_number"]) == (contact.phone, "+34910000000")
    assert ids(inbound) == [theirs.pk]


def test_calls_filter_by_another_partners_contact_is_refused(api_client, rival) -> None:
    call = completed_call(rival)

    response = api_client.get("/api/v1/calls/", {"contact": call.contact_id})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "contact"


def test_calls_filter_by_how_they_were_answered(api_client, spring) -> None:
    machine = completed_call(spring, answered_by=AnsweredBy.MACHINE_END_BEEP)
    completed_call(spring, answered_by=AnsweredBy.HUMAN)

    response = api_client.get("/api/v1/calls/", {"answered_by": "machine_end_beep"})

    assert ids(response) == [machine.pk]


def test_calls_filter_by_created_and_started_ranges(api_client, spring) -> None:
    # given calls created (and dialled) on the 1st, 2nd and 3rd
    day = datetime.datetime(2026, 3, 1, 10, tzinfo=datetime.UTC)
    calls = []
    for offset in range(3):
        moment = day + datetime.timedelta(days=offset)
        call = completed_call(spring, dialed_at=moment)
        Call.objects.filter(pk=call.pk).update(created_at=moment)
        calls.append(call)

    # when ranges are asked for, after inclusive and before exclusive
    created = api_client.get(
        "/api/v1/calls/",
        {"created_after": "2026-03-02T10:00:00Z", "created_before": "2026-03-03T10:00:00Z"},
    )
    started = api_client.get("/api/v1/calls/", {"started_before": "2026-03-02T00:00:00Z"})

    # then
    assert ids(created) == [calls[1].pk]
    assert ids(started) == [calls[0].pk]


def test_calls_filter_refuses_a_date_that_is_not_one(api_client) -> None:
    response = api_client.get("/api/v1/calls/", {"created_after": "yesterday"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "created_after"


def test_calls_filter_takes_any_iso_offset(api_client, spring) -> None:
    # given a call created at 10:00 UTC on the 1st
    call = completed_call(spring)
    moment = datetime.datetime(2026, 3, 1, 10, tzinfo=datetime.UTC)
    Call.objects.filter(pk=call.pk).update(created_at=moment)

    # when the range is written with offsets PostgreSQL would not store (beyond ±16 h)
    inside = api_client.get("/api/v1/calls/", {"created_after": "2026-03-02T09:00:00+23:30"})
    outside = api_client.get("/api/v1/calls/", {"created_after": "2026-03-02T10:30:00+23:30"})

    # then they are the same moments in UTC: 09:30 and 11:00 on the 1st
    assert ids(inside) == [call.pk]
    assert ids(outside) == []


def test_calls_filter_refuses_a_moment_that_cannot_be_stored(api_client) -> None:
    response = api_client.get("/api/v1/calls/", {"created_after": "0001-01-01T00:00:00+23:00"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "created_after"


# --- Cursor pagination -------------------------------------------------------------------


def test_calls_are_walked_page_by_page_with_a_cursor(api_client, spring) -> None:
    # given five calls, two of them created at the same moment
    calls = [completed_call(spring) for _ in range(5)]
    moment = timezone.now()
    Call.objects.filter(pk__in=[calls[1].pk, calls[2].pk]).update(created_at=moment)
    expected = list(Call.objects.order_by("-created_at", "-id").values_list("pk", flat=True))

    # when following next two calls at a time
    seen: list[int] = []
    url: str | None = "/api/v1/calls/?page_size=2"
    pages = 0
    while url:
        page = api_client.get(url).json()
        assert len(page["results"]) <= 2
        seen += [call["id"] for call in page["results"]]
        url = page["next"]
        pages += 1

    # then every call comes once, newest first, on three pages
    assert seen == expected
    assert pages == 3
    assert "count" not in page


def test_calls_cursor_can_be_walked_back(api_client, spring) -> None:
    calls = [completed_call(spring) for _ in range(3)]
    first = api_client.get("/api/v1/calls/?page_size=2").json()
    second = api_client.get(first["next"]).json()

    back = api_client.get(second["previous"]).json()

    assert [call["id"] for call in second["results"]] == [calls[0].pk]
    assert [call["id"] for call in back["results"]] == [calls[2].pk, calls[1].pk]


def test_calls_cursor_that_was_tampered_with_is_refused(api_client, spring) -> None:
    completed_call(spring)

    response = api_client.get("/api/v1/calls/", {"cursor": "not-a-cursor"})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# --- Query counts ------------------------------------------------------------------------


def queries_for(client: APIClient, url: str) -> int:
    client.get(url)  # once first, so that the key's "last used" write is behind us
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_calls_list_takes_as_many_queries_for_one_call_as_for_many(
    api_client, spring, django_assert_num_queries
) -> None:
    completed_call(spring)
    few = queries_for(api_client, "/api/v1/calls/")
    for _ in range(6):
        completed_call(spring, outcome={"confirmed": True})

    with django_assert_num_queries(few):
        response = api_client.get("/api/v1/calls/")

    assert len(response.json()["results"]) == 7


def test_call_detail_takes_as_many_queries_for_one_turn_as_for_many(
    api_client, spring, django_assert_num_queries
) -> None:
    short, long = completed_call(spring), completed_call(spring)
    add_turns(short, 1)
    add_turns(long, 12)
    few = queries_for(api_client, f"/api/v1/calls/{short.pk}/")

    with django_assert_num_queries(few):
        response = api_client.get(f"/api/v1/calls/{long.pk}/")

    assert len(response.json()["turns"]) == 12


# --- Recordings --------------------------------------------------------------------------


@pytest.fixture
def recorded_call(spring, live_server, settings) -> Call:
    """A call whose recording the sandbox carrier (served by the live server) keeps."""
    settings.APP_URL = live_server.url
    settings.TELEPHONY_BACKEND = "sandbox"
    cache.set(sandbox_state.recording_key(RECORDING_SID), {"duration": 1}, 60)
    return completed_call(
        spring,
        recording_sid=RECORDING_SID,
        recording_url=f"{live_server.url}/sandbox/recordings/{RECORDING_SID}",
    )


def recording_url(call: Call) -> str:
    return f"/api/v1/calls/{call.pk}/recording/"


@pytest.mark.django_db(transaction=True)
def test_the_owning_partner_hears_a_calls_recording_with_its_api_key(
    api_client, recorded_call
) -> None:
    response = api_client.get(recording_url(recorded_call))

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/x-wav"
    assert response.content.startswith(b"RIFF")
    assert response["Cache-Control"] == "private, no-store"


@pytest.mark.django_db(transaction=True)
def test_the_owning_partner_hears_a_calls_recording_with_a_jwt(api_partner, recorded_call) -> None:
    response = jwt_client(api_partner).get(recording_url(recorded_call))

    assert response.status_code == 200
    assert response.content.startswith(b"RIFF")


@pytest.mark.django_db(transaction=True)
def test_staff_hear_any_partners_recording(staff_api_client, recorded_call) -> None:
    assert staff_api_client.get(recording_url(recorded_call)).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_another_partner_cannot_hear_a_recording(other_api_client, recorded_call) -> None:
    response = other_api_client.get(recording_url(recorded_call))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_the_recording_is_refused_without_credentials(recorded_call) -> None:
    assert APIClient().get(recording_url(recorded_call)).status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("accept", ["audio/mpeg", "audio/*", "application/json"])
def test_the_recording_answers_audio_whatever_the_client_accepts(
    api_client, recorded_call, accept
) -> None:
    response = api_client.get(recording_url(recorded_call), HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == "audio/x-wav"


@pytest.mark.django_db(transaction=True)
def test_a_missing_recording_answers_not_found_in_json_even_to_a_player(
    api_client, recorded_call
) -> None:
    Call.objects.filter(pk=recorded_call.pk).update(recording_url="")

    response = api_client.get(recording_url(recorded_call), HTTP_ACCEPT="audio/mpeg")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_a_recording_url_off_the_account_is_never_fetched(api_client, recorded_call) -> None:
    Call.objects.filter(pk=recorded_call.pk).update(recording_url="https://attacker.example/x")

    assert api_client.get(recording_url(recorded_call)).status_code == 404


def test_a_recording_while_twilio_is_not_answering_is_unavailable(
    api_client, spring, settings, closed_port
) -> None:
    # given a carrier that does not answer
    settings.TELEPHONY_BACKEND = "sandbox"
    settings.APP_URL = f"http://127.0.0.1:{closed_port}"
    call = completed_call(
        spring,
        recording_sid=RECORDING_SID,
        recording_url=f"{settings.APP_URL}/sandbox/recordings/{RECORDING_SID}",
    )

    # when
    response = api_client.get(recording_url(call))

    # then the client is told to try again, in the API's error shape
    assert response.status_code == 503
    assert response.json()["code"] == "telephony_unavailable"
