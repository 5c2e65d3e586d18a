"""The staff console's calls: the list (filters, search, constant queries) and a call's page."""

from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls.models import AnsweredBy, Call, CallEvent, Turn
from tests.factories import CallEventFactory, CallFactory, CampaignFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from voices.clips import render_clip

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:calls_call_changelist")
ENGLISH = {"accept-language": "en"}


def ended_call(campaign, number: int, **fields) -> Call:
    """A completed call to a new contact whose phone ends in ``number``."""
    return CallFactory(
        contact__campaign=campaign,
        contact__phone=f"+346000{number:05d}",
        **{"status": Call.Status.COMPLETED, **fields},
    )


def listed(response) -> set[str]:
    """The numbers of the calls on a changelist page."""
    return set(re.findall(r'class="field-number"><a [^>]*>(\+\d+)</a>', response.content.decode()))


def change_url(call: Call) -> str:
    return reverse("admin:calls_call_change", args=[call.pk])


# --- The list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"+34600000001", "+34600000002", "+34600000003", "+34600000004", "+34600000005"}),
        ("outcome=opted_out", {"+34600000001"}),
        ("outcome=transferred", {"+34600000002"}),
        ("outcome=callback", {"+34600000003", "+34600000004"}),
        ("outcome=voicemail", {"+34600000005"}),
        ("outcome=extraction_failed", {"+34600000004"}),
        ("outcome=attending", {"+34600000003"}),
        ("answered_by__exact=machine_end_beep", {"+34600000005"}),
        ("status__exact=busy", {"+34600000002"}),
        ("q=%2B3460000000", {f"+3460000000{n}" for n in range(1, 6)}),
        ("q=600+000+003", {"+34600000003"}),
        ("q=CA" + "1" * 32, {"+34600000001"}),
    ],
)
def test_call_changelist_filters_and_searches(admin_client, campaign, query, expected) -> None:
    # given calls with each kind of outcome
    ended_call(campaign, 1, outcome={"opted_out": True}, provider_sid="CA" + "1" * 32)
    ended_call(campaign, 2, status=Call.Status.BUSY, outcome={"transferred": True})
    ended_call(campaign, 3, outcome={"callback": True, "attending": True})
    ended_call(
        campaign,
        4,
        outcome={"callback_at": "2026-12-01T10:00:00+01:00", "extraction_failed": True},
    )
    ended_call(campaign, 5, answered_by=AnsweredBy.MACHINE_END_BEEP, outcome={"callback_at": None})

    # when staff filter the list
    response = admin_client.get(f"{CHANGELIST}?{query}", headers=ENGLISH)

    # then only the matching calls are listed
    assert response.status_code == 200
    assert listed(response) == expected


def test_call_changelist_filters_by_campaign_and_date(admin_client, campaign, partner) -> None:

    other = CampaignFactory(partner=partner, name="Autumn", template=campaign.template)
    ended_call(campaign, 1)
    old = ended_call(other, 2)
    Call.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=40))

    by_campaign = admin_client.get(f"{CHANGELIST}?campaign__id__exact={other.pk}")
    week_ago = timezone.localtime() - datetime.timedelta(days=7)
    this_month = admin_client.get(CHANGELIST, {"created_at__gte": week_ago.isoformat()})

    assert listed(by_campaign) == {"+34600000002"}
    assert listed(this_month) == {"+34600000001"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("direction__exact=inbound", {"inbound"}),
        ("direction__exact=outbound", {"outbound"}),
        ("q=600+000+001", {"outbound", "inbound"}),
        ("q=%2B3460000000", {"outbound", "inbound"}),
        ("q=%2B34910", set()),  # our own number is no contact's
    ],
)
def test_call_changelist_lists_calls_contacts_made_to_us_by_their_number(
    admin_client, campaign, query, expected
) -> None:
    # given: a contact we called, who rang us back
    ours = ended_call(campaign, 1)
    CallFactory(
        campaign=campaign,
        contact=ours.contact,
        direction=Call.Direction.INBOUND,
        status=Call.Status.COMPLETED,
        from_number=ours.contact.phone,
        to_number="+34910000000",
    )

    response = admin_client.get(f"{CHANGELIST}?{query}", headers=ENGLISH)

    # then each is listed under the contact's number, with its direction
    page = response.content.decode()
    shown = set(re.findall(r'<td class="field-direction">(\w+)</td>', page))
    assert {word.lower() for word in shown} == expected
    if expected:
        assert listed(response) == {"+34600000001"}


def test_call_changelist_counts_each_filter_on_demand(admin_client, campaign) -> None:
    ended_call(campaign, 1, outcome={"opted_out": True})
    ended_call(campaign, 2, outcome={"callback": True})

    response = admin_client.get(f"{CHANGELIST}?_facets=True", headers=ENGLISH)

    page = response.content.decode()
    assert response.status_code == 200
    assert "Opted out (1)" in page
    assert "Callback requested (1)" in page


def test_call_changelist_shows_outcome_flags(admin_client, campaign) -> None:
    ended_call(campaign, 1, outcome={"opted_out": True, "callback_at": "2026-12-01T10:00:00Z"})

    page = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()

    assert '<td class="field-outcome_flags">Opted out, Callback requested</td>' in page


@pytest.mark.parametrize("query", ["", "outcome=opted_out&status__exact=completed", "q=%2B346"])
def test_call_changelist_queries_do_not_grow_with_calls(
    admin_client, campaign, django_assert_num_queries, query
) -> None:
    # given 5 calls listed in some number of queries
    for number in range(5):
        ended_call(campaign, number, outcome={"opted_out": True})
    with CaptureQueriesContext(connection) as few:
        assert len(listed(admin_client.get(f"{CHANGELIST}?{query}"))) == 5

    # when there are 50
    for number in range(5, 50):
        ended_call(campaign, number, outcome={"opted_out": True})

    # then the list reads ten times the rows in as many queries
    with django_assert_num_queries(len(few)):
        assert len(listed(admin_client.get(f"{CHANGELIST}?{query}"))) == 50


def test_call_changelist_does_not_count_every_call(admin_client, campaign) -> None:
    ended_call(campaign, 1)

    response = admin_client.get(f"{CHANGELIST}?status__exact=completed")

    assert response.context["cl"].show_full_result_count is False


def date_links(response) -> list[str]:
    """The date drill-down's links above the list, in order (the way back first)."""
    nav = re.search(r'<nav class="toplinks">(.*?)</nav>', response.content.decode(), re.S)
    return [" ".join(text.split()) for text in re.findall(r"<a [^>]*>([^<]+)</a>", nav.group(1))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["2025", "2026"]),
        ("created_at__year=2025", ["&lsaquo; All dates", "November 2025", "December 2025"]),
        (
            "created_at__year=2025&created_at__month=12",
            ["&lsaquo; 2025", "December 2", "December 3", "December 4"],
        ),
        (
            "created_at__year=2025&created_at__month=12&created_at__day=3",
            ["&lsaquo; December 2025"],
        ),
    ],
)
def test_call_changelist_drills_down_by_date_without_reading_every_call(
    admin_client, campaign, settings, query, expected
) -> None:
    # given calls on 30 November, 2 and 4 December 2025 and 3 January 2026, Madrid time
    zone = ZoneInfo(settings.TIME_ZONE)
    for number, (year, month, day) in enumerate(
        [(2025, 11, 30), (2025, 12, 2), (2025, 12, 4), (2026, 1, 3)], start=1
    ):
        call = ended_call(campaign, number)
        moment = datetime.datetime(year, month, day, 23, 30, tzinfo=zone)
        Call.objects.filter(pk=call.pk).update(created_at=moment)

    # when staff drill down
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"{CHANGELIST}?{query}", headers=ENGLISH)

    # then each period between the first and the last call in range is offered, read
    # from the first and the last call (no query reads each call's date)
    assert response.status_code == 200
    assert date_links(response) == expected
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"]]


def test_call_changelist_drill_down_lists_the_day_chosen(admin_client, campaign, settings) -> None:
    zone = ZoneInfo(settings.TIME_ZONE)
    ended_call(campaign, 1)
    late = ended_call(campaign, 2)
    Call.objects.filter(pk=late.pk).update(
        created_at=datetime.datetime(2025, 12, 2, 23, 30, tzinfo=zone)
    )

    response = admin_client.get(
        CHANGELIST, {"created_at__year": 2025, "created_at__month": 12, "created_at__day": 2}
    )

    assert listed(response) == {"+34600000002"}


def test_calls_cannot_be_added_or_changed(admin_client, campaign) -> None:
    call = ended_call(campaign, 1)

    page = admin_client.get(change_url(call), headers=ENGLISH)

    assert admin_client.get(reverse("admin:calls_call_add")).status_code == 403
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


# --- A call's page ------------------------------------------------------------------------


@pytest.fixture
def conversation(campaign) -> Call:
    answered = timezone.now() - datetime.timedelta(minutes=5)
    call = ended_call(
        campaign,
        1,
        provider_sid="CA" + "2" * 32,
        answered_at=answered,
        recording_sid="RE" + "1" * 32,
        recording_url="https://api.twilio.com/2010-04-01/Recordings/RE1",
        outcome={"attending": True, "callback_at": "2026-12-01T10:00:00+01:00"},
        summary="Lucía confirmará la cita.",
    )
    lines = [
        (Turn.Role.AGENT, "Hola. ¿Puede hablar?", {}),
        (Turn.Role.CALLER, "Sí, dígame.", {"confidence": 0.91}),
        (
            Turn.Role.AGENT,
            "Perfecto. La llamo mañana.",
            {"latency_ms": 1234, "model_ms": 800, "speech_ms": 321},
        ),
    ]
    for sequence, (role, text, fields) in enumerate(lines):
        Turn.objects.create(
            call=call,
            sequence=sequence,
            role=role,
            text=text,
            started_at=answered + datetime.timedelta(seconds=5 + 10 * sequence),
            **fields,
        )
    CallEventFactory(
        call=call,
        provider_sid=call.provider_sid,
        kind=CallEvent.Kind.STATUS,
        sequence_number=0,
        payload={"CallStatus": "ringing", "CallSid": call.provider_sid},
    )
    return call


def test_call_page_shows_the_conversation_in_order(admin_client, conversation) -> None:
    # when staff open the call
    response = admin_client.get(change_url(conversation), headers=ENGLISH)

    # then its turns read as a chat, in order, with their offsets and timings
    assert response.status_code == 200
    page = response.content.decode()
    turns = re.findall(r'<div class="turn turn-(\w+)" id="turn-(\d+)"', page)
    assert turns == [("agent", "0"), ("caller", "1"), ("agent", "2")]
    assert page.index("Hola. ¿Puede hablar?") < page.index("Sí, dígame.")
    assert page.index("Sí, dígame.") < page.index("Perfecto. La llamo mañana.")
    assert re.findall(r'<span class="turn-offset"[^>]*>([^<]+)</span>', page) == [
        "+0:05",
        "+0:15",
        "+0:25",
    ]
    assert '<span class="turn-timing" data-timing="latency_ms">latency 1234 ms</span>' in page
    assert '<span class="turn-timing" data-timing="model_ms">model 800 ms</span>' in page
    assert '<span class="turn-timing" data-timing="speech_ms">speech 321 ms</span>' in page
    assert "confidence 0.91" in page


def test_call_page_plays_the_recording_through_the_staff_proxy(admin_client, conversation) -> None:
    page = admin_client.get(change_url(conversation)).content.decode()

    src = reverse("calls:recording-audio", kwargs={"call_id": conversation.pk})
    assert f'<audio id="call-recording" controls preload="none" src="{src}">' in page


def test_call_page_without_recording_says_so(admin_client, campaign) -> None:
    call = ended_call(campaign, 1)

    page = admin_client.get(change_url(call), headers=ENGLISH).content.decode()

    assert 'id="call-recording"' not in page
    assert "This call has no recording." in page
    assert 'id="call-transcript-empty"' in page


def test_call_page_shows_outcome_summary_and_events(admin_client, conversation) -> None:
    page = admin_client.get(change_url(conversation), headers=ENGLISH).content.decode()

    assert '<tr data-key="attending"><th scope="row">attending</th><td>true</td></tr>' in page
    assert (
        '<tr data-key="callback_at"><th scope="row">callback_at</th>'
        "<td>2026-12-01T10:00:00+01:00</td></tr>"
    ) in page
    assert '<p id="call-summary">Lucía confirmará la cita.</p>' in page
    assert '<tr class="call-event" data-kind="status">' in page
    assert "&quot;CallStatus&quot;: &quot;ringing&quot;" in page


def test_call_page_plays_the_clips_the_agent_spoke(
    admin_client, conversation, fake_elevenlabs, settings
) -> None:
    # given the campaign's (default) voice voiced the first turn sentence by sentence, and
    # the last one as a single line
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    hello = render_clip(text="Hola.", voice=voice)
    question = render_clip(text="¿Puede hablar?", voice=voice)
    reply = render_clip(text="Perfecto. La llamo mañana.", voice=voice)
    render_clip(text="Sí, dígame.", voice=voice)  # never spoken by the agent

    # when staff open the call
    page = admin_client.get(change_url(conversation), headers=ENGLISH).content.decode()

    # then each agent turn has a player for each clip it played, in order
    sources = re.findall(r'<audio class="turn-clip" controls preload="none" src="([^"]+)"', page)
    assert sources == [
        f"/clips/{hello.token}.mp3",
        f"/clips/{question.token}.mp3",
        f"/clips/{reply.token}.mp3",
    ]


def test_call_page_plays_the_clips_each_turn_kept_whatever_their_model(
    admin_client, conversation, fake_elevenlabs
) -> None:
    # given an agent turn that kept the clips it played: one of the model's live lines,
    # rendered with the fast model, which no content address of today's settings finds
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Sarah")
    live = render_clip(text="Perfecto. La llamo mañana.", voice=voice, new_text=True)
    reply = conversation.turns.filter(role="agent").order_by("sequence").last()
    reply.clips = [live.pk]
    reply.save(update_fields=["clips"])

    page = admin_client.get(change_url(conversation), headers=ENGLISH).content.decode()

    sources = re.findall(r'<audio class="turn-clip" controls preload="none" src="([^"]+)"', page)
    assert sources == [f"/clips/{live.token}.mp3"]


def test_call_page_opens_for_staff_who_may_only_view_calls(
    client, django_user_model, conversation
) -> None:
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)

    response = client.get(change_url(conversation))

    assert response.status_code == 200
    assert 'id="call-transcript"' in response.content.decode()
