"""The staff console's campaigns: the list (progress, live calls, answer rate, in constant
queries), the start/pause/resume/cancel actions and buttons with their permission, and a
campaign's page (figures, charts, pacing limits in effect)."""

from __future__ import annotations

import datetime
import json
import re
from decimal import Decimal
from itertools import count, pairwise

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from calls.models import AnsweredBy, Call
from calls.pacing import back_off_campaign
from calls.reports.dashboard import campaign_dashboard
from calls.reports.stats import calls_by_hour
from campaigns import services
from campaigns.models import Campaign, Contact
from tests.factories import CallFactory, CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:campaigns_campaign_changelist")
ENGLISH = {"accept-language": "en"}
SIDS = count(1)
PHONES = count(1)


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def control_url(campaign: Campaign, name: str) -> str:
    return reverse("admin:campaigns_campaign_control", args=[campaign.pk, name])


def add_contact(
    campaign: Campaign, state: str = Contact.State.PENDING, variables: dict | None = None
) -> Contact:
    return ContactFactory(
        campaign=campaign,
        phone=f"+34600{next(PHONES):06d}",
        state=state,
        variables=variables or {},
    )


def add_call(
    campaign: Campaign,
    status: str = Call.Status.COMPLETED,
    *,
    answered_by: str = "",
    created_at: datetime.datetime | None = None,
    **fields,
) -> Call:
    """A call to a new contact; one that reached the carrier (with a SID) unless it is
    still waiting to be dialled."""
    contact = add_contact(campaign, Contact.State.CALLING)
    reached = status not in (Call.Status.PENDING, Call.Status.DIALING)
    return CallFactory(
        contact=contact,
        status=status,
        answered_by=answered_by,
        provider_sid=f"CA{next(SIDS):032d}" if reached else None,
        created_at=created_at,
        **fields,
    )


def ready(campaign: Campaign, state: str = Campaign.State.DRAFT) -> Campaign:
    """``campaign`` able to start: a caller number, a contact waiting with the first name
    its template speaks, and ``state``."""
    campaign.caller_number = "+34910000000"
    campaign.state = state
    campaign.save()
    add_contact(campaign, variables={"first_name": "Ana"})
    return campaign


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def staff_with(django_user_model, client, *codenames: str):
    """``client`` logged in as a staff user with only the campaign permissions named."""
    user = django_user_model.objects.create_user("someone", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames)
    )
    client.force_login(user)
    return client


def tile(page: str, key: str) -> str:
    """The figure of one of the page's tiles."""
    found = re.search(rf'id="tile-{key}"><dt>[^<]*</dt><dd class="figure">([^<]*)</dd>', page)
    return found.group(1) if found else ""


def row_of(page: str, campaign: Campaign) -> str:
    """The changelist row of ``campaign``."""
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    return next(row for row in rows if f'value="{campaign.pk}"' in row)


# --- The list -----------------------------------------------------------------------------


def test_campaign_changelist_shows_progress_live_calls_and_answer_rate(
    admin_client, campaign
) -> None:
    # given 2 of 5 contacts done (one answered, one opted out), and calls in every state
    add_contact(campaign, Contact.State.DONE)
    add_contact(campaign, Contact.State.OPTED_OUT)
    add_contact(campaign, Contact.State.PENDING)
    add_call(campaign, Call.Status.IN_PROGRESS)  # its contact is calling
    add_call(campaign, Call.Status.RINGING)  # and so is this one's
    add_call(campaign, Call.Status.COMPLETED, answered_by=AnsweredBy.HUMAN)
    add_call(campaign, Call.Status.COMPLETED, answered_by=AnsweredBy.MACHINE_END_BEEP)
    add_call(campaign, Call.Status.BUSY)
    add_call(campaign, Call.Status.NO_ANSWER)
    Contact.objects.filter(calls__status__in=["completed", "busy", "no-answer"]).update(
        state=Contact.State.DONE
    )

    # when staff list the campaigns
    page = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()

    # then its row shows 6 of 9 contacts done, 2 live calls, 1 answered of 4 ended
    row = row_of(page, campaign)
    assert '<td class="field-partner nowrap">Acme</td>' in row
    assert '<td class="field-state">Draft</td>' in row
    assert '<progress class="campaign-progress" value="6" max="9"' in row
    assert 'aria-label="6 of 9 contacts done"' in row
    assert '<span class="campaign-progress-figures">6 / 9</span>' in row
    assert '<td class="field-live">2</td>' in row
    assert '<td class="field-answer_rate">25%</td>' in row
    for header in ("Name", "Partner", "State", "Progress", "Live calls", "Answer rate"):
        assert f">{header}</a>" in page


def test_campaign_changelist_of_a_campaign_without_contacts_or_calls(
    admin_client, campaign
) -> None:
    row = row_of(admin_client.get(CHANGELIST, headers=ENGLISH).content.decode(), campaign)

    assert '<progress class="campaign-progress" value="0" max="1"' in row
    assert '<span class="campaign-progress-figures">0 / 0</span>' in row
    assert '<td class="field-live">0</td>' in row
    assert '<td class="field-answer_rate">—</td>' in row


def test_campaign_changelist_sorts_by_answer_rate(admin_client, campaign, partner) -> None:
    # given campaigns answered at 100%, 50% and never
    better = CampaignFactory(partner=partner, name="Better", template=campaign.template)
    none = CampaignFactory(partner=partner, name="None yet", template=campaign.template)
    add_call(better, answered_by=AnsweredBy.HUMAN)
    add_call(campaign, answered_by=AnsweredBy.HUMAN)
    add_call(campaign, Call.Status.BUSY)
    column = 6  # name, partner, state, progress, live, answer rate (after the checkbox)

    # when sorted by answer rate, ascending
    page = admin_client.get(f"{CHANGELIST}?o={column}", headers=ENGLISH).content.decode()

    # then the lower rates come first, after the campaigns without any
    names = re.findall(r'class="field-name"><a [^>]*>([^<]+)</a>', page)
    assert names == [none.name, "Spring", "Better"]


def test_campaign_changelist_queries_do_not_grow_with_campaigns_contacts_or_calls(
    admin_client, campaign, partner
) -> None:
    # given one campaign with a contact and a call
    add_call(campaign, Call.Status.IN_PROGRESS)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(CHANGELIST).status_code == 200

    # when there are twelve, each with contacts and calls in several states
    for number in range(11):
        other = CampaignFactory(
            partner=partner, name=f"Campaign {number}", template=campaign.template
        )
        add_contact(other, Contact.State.DONE)
        add_call(other, Call.Status.IN_PROGRESS)
        add_call(other, answered_by=AnsweredBy.HUMAN)
        add_call(other, Call.Status.BUSY)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(CHANGELIST).content.decode()

    # then the list reads them all in as many queries
    assert page.count('class="campaign-progress"') == 12
    assert len(many) == len(one), [query["sql"] for query in many]


# --- Start, pause, resume, cancel: the list's actions ---------------------------------------


def run_action(client, action: str, *campaigns: Campaign, **extra):
    return client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [campaign.pk for campaign in campaigns],
            "index": 0,
            **extra,
        },
        headers=ENGLISH,
    )


def test_start_action_starts_the_campaign(admin_client, campaign) -> None:
    # given a draft ready to call
    ready(campaign)

    # when staff start it from the list
    response = run_action(admin_client, "start_campaigns", campaign)

    # then it runs, and they are told
    campaign.refresh_from_db()
    assert response.status_code == 302
    assert campaign.state == Campaign.State.RUNNING
    assert messages_of(response) == [("success", "“Spring” started: it is calling.")]


def test_start_action_schedules_a_campaign_whose_start_is_ahead(admin_client, campaign) -> None:
    ready(campaign)
    campaign.starts_at = timezone.now() + datetime.timedelta(days=2)
    campaign.save()

    response = run_action(admin_client, "start_campaigns", campaign)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.SCHEDULED
    [(level, text)] = messages_of(response)
    assert level == "success"
    assert text.startswith("“Spring” is scheduled: it starts calling at ")


def test_start_action_lists_every_reason_it_was_refused(admin_client, settings, partner) -> None:
    # given a draft without a template, caller number or contacts
    settings.TWILIO_PHONE_NUMBER = ""
    bare = CampaignFactory(partner=partner, name="Bare")

    # when staff try to start it
    response = run_action(admin_client, "start_campaigns", bare)

    # then it stays a draft, and one error names each reason
    bare.refresh_from_db()
    assert bare.state == Campaign.State.DRAFT
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text == (
        '“Bare” cannot start:<ul class="campaign-refusal">'
        "<li>The campaign has no call template.</li>"
        "<li>No caller number: set one on the campaign or TWILIO_PHONE_NUMBER.</li>"
        "<li>The campaign has no contacts waiting to be called.</li></ul>"
    )


def test_start_action_refused_when_nobody_waiting_can_be_called(admin_client, campaign) -> None:
    # given a draft whose two contacts lack the first name its template speaks
    ready(campaign)
    Contact.objects.filter(campaign=campaign).update(variables={})
    add_contact(campaign)

    response = run_action(admin_client, "start_campaigns", campaign)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DRAFT
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text.startswith(
        '“Spring” cannot start:<ul class="campaign-refusal"><li>None of the 2 contacts '
        "waiting can be called: 2 lack first_name. Give them the missing variables"
    )


def test_start_button_starts_with_a_warning_naming_who_cannot_be_called(
    admin_client, campaign
) -> None:
    # given three contacts waiting: one with a first name, two without
    ready(campaign)
    add_contact(campaign)
    add_contact(campaign)

    response = admin_client.post(control_url(campaign, "start"), headers=ENGLISH)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING
    assert messages_of(response) == [
        ("success", "“Spring” started: it is calling."),
        (
            "warning",
            "“Spring”: 2 of the 3 contacts waiting cannot be called: 2 lack first_name.",
        ),
    ]


def test_start_action_on_several_campaigns_reports_each(admin_client, campaign, partner) -> None:
    ready(campaign)
    bare = CampaignFactory(partner=partner, name="Bare", template=campaign.template)

    response = run_action(admin_client, "start_campaigns", campaign, bare)

    levels = dict((text.split("”")[0].lstrip("“"), level) for level, text in messages_of(response))
    assert levels == {"Spring": "success", "Bare": "error"}
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING


def test_pause_action_pauses_a_running_campaign(admin_client, campaign) -> None:
    ready(campaign, Campaign.State.RUNNING)

    response = run_action(admin_client, "pause_campaigns", campaign)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.PAUSED
    assert messages_of(response) == [
        ("success", "“Spring” is paused: calls going on finish, and no new ones are made.")
    ]


def test_pause_action_refuses_a_draft(admin_client, campaign) -> None:
    response = run_action(admin_client, "pause_campaigns", campaign)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DRAFT
    assert messages_of(response) == [
        (
            "error",
            '“Spring” cannot be paused:<ul class="campaign-refusal">'
            "<li>A Draft campaign cannot become Paused.</li></ul>",
        )
    ]


def test_resume_action_resumes_a_paused_campaign(admin_client, campaign) -> None:
    ready(campaign, Campaign.State.PAUSED)

    response = run_action(admin_client, "resume_campaigns", campaign)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING
    assert messages_of(response) == [("success", "“Spring” is calling again.")]


def test_resume_action_lists_every_reason_it_was_refused(admin_client, campaign) -> None:
    # given a paused campaign whose end has passed, with nobody left to call
    campaign.state = Campaign.State.PAUSED
    campaign.caller_number = "+34910000000"
    campaign.ends_at = timezone.now() - datetime.timedelta(hours=1)
    campaign.save()
    add_contact(campaign, Contact.State.DONE)

    # when staff resume it
    response = run_action(admin_client, "resume_campaigns", campaign)

    # then it stays paused, and both reasons are given
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.PAUSED
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "<li>The campaign has no contacts waiting to be called.</li>" in text
    assert "<li>The campaign&#x27;s end date has passed.</li>" in text


def test_cancel_action_asks_first_then_cancels(admin_client, campaign) -> None:
    # given a running campaign with a call going on
    ready(campaign, Campaign.State.RUNNING)
    add_call(campaign, Call.Status.IN_PROGRESS)

    # when staff choose to cancel it
    asked = run_action(admin_client, "cancel_campaigns", campaign)

    # then they are asked to confirm, and nothing changed yet
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Cancel this campaign for good?" in page
    assert '<input type="hidden" name="action" value="cancel_campaigns">' in page
    assert f'<input type="hidden" name="_selected_action" value="{campaign.pk}">' in page

    # when they confirm (the confirmation page's form)
    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_campaigns", "_selected_action": [campaign.pk], "post": "yes"},
        headers=ENGLISH,
    )

    # then it is cancelled
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.CANCELLED
    assert messages_of(response) == [
        ("success", "“Spring” is cancelled: none of its contacts will be called again.")
    ]


def test_cancel_action_refuses_a_completed_campaign(admin_client, campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.COMPLETED)

    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_campaigns", "_selected_action": [campaign.pk], "post": "yes"},
        headers=ENGLISH,
    )

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.COMPLETED
    assert messages_of(response) == [
        (
            "error",
            '“Spring” cannot be cancelled:<ul class="campaign-refusal">'
            "<li>A Completed campaign cannot become Cancelled.</li></ul>",
        )
    ]


# --- The page's buttons -------------------------------------------------------------------


def buttons(page: str) -> list[str]:
    """The names of the page's lifecycle buttons, in order."""
    return re.findall(
        r'<button type="submit" class="control-[a-z]+" id="[^"]+">([^<]+)</button>', page
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (Campaign.State.DRAFT, ["Start campaign", "Cancel campaign…"]),
        (Campaign.State.SCHEDULED, ["Cancel campaign…"]),
        (Campaign.State.RUNNING, ["Pause campaign", "Cancel campaign…"]),
        (Campaign.State.PAUSED, ["Resume campaign", "Cancel campaign…"]),
        (Campaign.State.COMPLETED, []),
        (Campaign.State.CANCELLED, []),
    ],
)
def test_campaign_page_offers_the_buttons_of_its_state(
    admin_client, campaign, state, expected
) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(
        state=state, starts_at=timezone.now() + datetime.timedelta(days=1)
    )

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert buttons(page) == expected
    for name in ("start", "pause", "resume", "cancel"):
        # each button is a form of its own that posts, with a CSRF token, to its view
        shown = f'<form method="post" action="{control_url(campaign, name)}">' in page
        assert shown == any(label.lower().startswith(name) for label in expected)
    assert page.count('name="csrfmiddlewaretoken"') >= len(expected)


def test_start_button_starts_the_campaign_and_returns_to_its_page(admin_client, campaign) -> None:
    ready(campaign)

    response = admin_client.post(control_url(campaign, "start"), headers=ENGLISH)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING
    assert response.status_code == 302
    assert response["Location"] == change_url(campaign)
    assert messages_of(response) == [("success", "“Spring” started: it is calling.")]


def test_start_button_shows_every_reason_it_was_refused(admin_client, settings, partner) -> None:
    # given a draft without a template, caller number or contacts
    settings.TWILIO_PHONE_NUMBER = ""
    bare = CampaignFactory(partner=partner, name="Bare")

    # when staff press Start on its page
    response = admin_client.post(control_url(bare, "start"), headers=ENGLISH, follow=True)

    # then the page shows the error with each reason
    page = response.content.decode()
    assert response.redirect_chain == [(change_url(bare), 302)]
    assert '<li class="error">“Bare” cannot start:<ul class="campaign-refusal">' in page
    assert "<li>The campaign has no call template.</li>" in page
    assert "<li>No caller number: set one on the campaign or TWILIO_PHONE_NUMBER.</li>" in page
    assert "<li>The campaign has no contacts waiting to be called.</li>" in page
    bare.refresh_from_db()
    assert bare.state == Campaign.State.DRAFT


def test_pause_and_resume_buttons(admin_client, campaign) -> None:
    ready(campaign, Campaign.State.RUNNING)

    paused = admin_client.post(control_url(campaign, "pause"), headers=ENGLISH)
    campaign.refresh_from_db()
    state_after_pause = campaign.state
    resumed = admin_client.post(control_url(campaign, "resume"), headers=ENGLISH)
    campaign.refresh_from_db()

    assert state_after_pause == Campaign.State.PAUSED
    assert campaign.state == Campaign.State.RUNNING
    assert messages_of(paused)[-1] == (
        "success",
        "“Spring” is paused: calls going on finish, and no new ones are made.",
    )
    assert messages_of(resumed)[-1] == ("success", "“Spring” is calling again.")


def test_a_button_of_another_state_is_refused_with_the_reason(admin_client, campaign) -> None:
    # a page left open while the campaign moved on: its Resume button is stale
    ready(campaign, Campaign.State.RUNNING)

    response = admin_client.post(control_url(campaign, "resume"), headers=ENGLISH)

    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING
    assert messages_of(response) == [
        (
            "error",
            '“Spring” cannot resume:<ul class="campaign-refusal">'
            "<li>A Running campaign cannot become Running.</li></ul>",
        )
    ]


def test_cancel_button_asks_first_then_cancels(admin_client, campaign) -> None:
    asked = admin_client.post(control_url(campaign, "cancel"), headers=ENGLISH)
    campaign.refresh_from_db()
    state_when_asked = campaign.state

    confirmed = admin_client.post(control_url(campaign, "cancel"), {"post": "yes"})

    campaign.refresh_from_db()
    assert asked.status_code == 200
    assert "Cancel this campaign for good?" in asked.content.decode()
    assert 'name="action"' not in asked.content.decode()  # it posts back to the button's view
    assert state_when_asked == Campaign.State.DRAFT
    assert confirmed["Location"] == change_url(campaign)
    assert campaign.state == Campaign.State.CANCELLED


def test_buttons_only_take_a_post(admin_client, campaign) -> None:
    ready(campaign)

    response = admin_client.get(control_url(campaign, "start"))

    campaign.refresh_from_db()
    assert response.status_code == 405
    assert campaign.state == Campaign.State.DRAFT


def test_a_button_needs_the_csrf_token(client, admin_user, campaign) -> None:
    ready(campaign)
    client.handler.enforce_csrf_checks = True
    client.force_login(admin_user)

    response = client.post(control_url(campaign, "start"))

    campaign.refresh_from_db()
    assert response.status_code == 403
    assert campaign.state == Campaign.State.DRAFT


# --- Who may ------------------------------------------------------------------------------


def test_viewer_sees_no_action_no_button_and_a_read_only_page(
    client, django_user_model, campaign
) -> None:
    # given a staff user who may only view campaigns
    ready(campaign)
    viewer = staff_with(django_user_model, client, "view_campaign")

    # when they open the list and the campaign's page, and post to its start button
    listing = viewer.get(CHANGELIST, headers=ENGLISH).content.decode()
    page = viewer.get(change_url(campaign), headers=ENGLISH).content.decode()
    started = viewer.post(control_url(campaign, "start"))
    by_action = run_action(viewer, "start_campaigns", campaign)

    # then nothing offers to start it, the page cannot be saved, and the posts are refused
    assert 'name="action"' not in listing
    assert "start_campaigns" not in listing
    assert "campaign-tiles" in page  # the figures, which they may see
    assert buttons(page) == []
    assert 'name="_save"' not in page
    assert started.status_code == 403
    assert by_action.status_code in (200, 302)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DRAFT


def test_operator_may_run_campaigns_without_changing_their_settings(
    client, django_user_model, campaign
) -> None:
    # given an operator: may view and control campaigns, not change them
    ready(campaign)
    operator = staff_with(django_user_model, client, "view_campaign", "control_campaign")

    # when they open the list and the page, and start the campaign
    listing = operator.get(CHANGELIST, headers=ENGLISH).content.decode()
    page = operator.get(change_url(campaign), headers=ENGLISH).content.decode()
    response = operator.post(control_url(campaign, "start"))

    # then the actions and buttons are theirs, the settings stay read-only
    for action in ("start_campaigns", "pause_campaigns", "resume_campaigns", "cancel_campaigns"):
        assert f'<option value="{action}">' in listing
    assert 'value="delete_selected"' not in listing
    assert buttons(page) == ["Start campaign", "Cancel campaign…"]
    assert 'name="_save"' not in page
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING


def test_editor_without_the_control_permission_may_not_start(
    client, django_user_model, campaign
) -> None:
    ready(campaign)
    editor = staff_with(django_user_model, client, "view_campaign", "change_campaign")

    listing = editor.get(CHANGELIST, headers=ENGLISH).content.decode()
    page = editor.get(change_url(campaign), headers=ENGLISH).content.decode()
    started = editor.post(control_url(campaign, "start"))

    assert "start_campaigns" not in listing
    assert buttons(page) == []
    assert 'name="_save"' in page
    assert started.status_code == 403


# --- Settings change only while a draft or paused ---------------------------------------


def form_data(campaign: Campaign, **changes) -> dict:
    """The change form as the page posts it, with ``changes``."""
    data = {
        "name": campaign.name,
        "template": campaign.template_id,
        "caller_number": campaign.caller_number,
        "phone_region": campaign.phone_region,
        "compliance_profile": campaign.compliance_profile,
        "purpose": campaign.purpose,
        "calling_windows": json.dumps(campaign.calling_windows),
        "frequency_cap_calls": campaign.frequency_cap_calls,
        "frequency_cap_hours": campaign.frequency_cap_hours,
        "ring_timeout_seconds": campaign.ring_timeout_seconds,
        "time_limit_seconds": campaign.time_limit_seconds,
        "machine_action": campaign.machine_action,
        "transport": campaign.transport,
        "max_concurrent_calls": campaign.max_concurrent_calls,
        "calls_per_second": campaign.calls_per_second,
        "max_attempts": campaign.max_attempts,
        "retry_policy": json.dumps(campaign.retry_policy),
        "sandbox_personas": json.dumps(campaign.sandbox_personas),
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_a_draft_campaigns_settings_are_saved(admin_client, campaign) -> None:
    response = admin_client.post(change_url(campaign), form_data(campaign, calls_per_second=2))

    assert response.status_code == 302, response.content.decode()[:2000]
    campaign.refresh_from_db()
    assert campaign.calls_per_second == 2


def test_a_campaigns_caller_number_is_saved_in_e164(admin_client, campaign, partner) -> None:
    # when staff type the numbers as people write them, on a new campaign and on a change
    added = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            **form_data(campaign, name="Autumn", caller_number="+34 (910) 00-00-00"),
            "partner": partner.pk,
            "transfer_number": "910 000 999",
        },
    )
    changed = admin_client.post(
        change_url(campaign), form_data(campaign, caller_number="0034 910 000 001")
    )

    # then both are kept in E.164
    assert added.status_code == changed.status_code == 302, added.content.decode()[:2000]
    autumn = Campaign.objects.get(name="Autumn")
    assert (autumn.caller_number, autumn.transfer_number) == ("+34910000000", "+34910000999")
    campaign.refresh_from_db()
    assert campaign.caller_number == "+34910000001"


def test_a_caller_number_that_is_no_number_is_refused_on_its_field(admin_client, campaign) -> None:
    response = admin_client.post(
        change_url(campaign), form_data(campaign, caller_number="555"), headers=ENGLISH
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"caller_number": ["“555” is not a valid phone number (region ES)."]}
    campaign.refresh_from_db()
    assert campaign.caller_number == ""


def test_a_running_campaigns_settings_are_read_only(admin_client, campaign) -> None:
    # given a running campaign
    ready(campaign, Campaign.State.RUNNING)

    # when staff open its page, and post a change anyway
    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()
    response = admin_client.post(change_url(campaign), form_data(campaign, calls_per_second=9))

    # then nothing can be saved, the page says why, and the rate is unchanged
    assert 'name="_save"' not in page
    assert 'id="campaign-settings-locked"' in page
    assert "pause it first" in page
    assert 'name="calls_per_second"' not in page
    assert response.status_code in (200, 302)
    campaign.refresh_from_db()
    assert campaign.calls_per_second != 9


def test_a_campaign_started_while_its_page_was_open_is_not_changed(admin_client, campaign) -> None:
    # given the page of a draft, opened; then the campaign starts
    ready(campaign)
    data = form_data(campaign, calls_per_second=3)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)

    # when the form is posted
    response = admin_client.post(change_url(campaign), data, headers=ENGLISH)

    # then it is refused with the reason, and nothing changed
    campaign.refresh_from_db()
    assert campaign.calls_per_second != 3
    assert "pause it first" in response.content.decode()


def test_only_a_draft_offers_deletion(admin_client, campaign) -> None:
    draft = admin_client.get(reverse("admin:campaigns_campaign_delete", args=[campaign.pk]))
    ready(campaign, Campaign.State.PAUSED)
    paused = admin_client.get(reverse("admin:campaigns_campaign_delete", args=[campaign.pk]))

    assert draft.status_code == 200
    assert paused.status_code == 403


def test_figures_need_the_view_permission(client, django_user_model, admin_client, campaign):
    url = reverse("admin:campaigns_campaign_figures", args=[campaign.pk])
    stranger = staff_with(django_user_model, client, "view_partner")

    assert stranger.get(url).status_code == 403
    assert admin_client.get(url).status_code == 200


def test_import_link_for_those_who_may_import(client, django_user_model, campaign) -> None:
    importer = staff_with(django_user_model, client, "view_campaign", "add_contactimport")
    expected = f'href="{reverse("admin:campaigns_contactimport_add")}?campaign={campaign.pk}"'

    page = importer.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert f'<a id="campaign-import-link" {expected}>Import contacts</a>' in page


def test_no_import_link_for_those_who_may_not(client, django_user_model, campaign) -> None:
    viewer = staff_with(django_user_model, client, "view_campaign")

    page = viewer.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert "campaign-import-link" not in page


def test_campaign_pages_carry_the_app_name(admin_client, campaign, settings) -> None:
    listing = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()
    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    for html in (listing, page):
        assert f"| {settings.APP_NAME}</title>" in html
        assert f'<div id="site-name"><a href="/admin/">{settings.APP_NAME}</a></div>' in html


# --- The campaign's page: figures and charts ----------------------------------------------


def test_campaign_page_shows_the_figures_now(admin_client, campaign) -> None:
    # given contacts and calls, two of them answered with a price
    add_contact(campaign, Contact.State.PENDING)
    add_call(campaign, Call.Status.IN_PROGRESS)
    add_call(
        campaign,
        answered_by=AnsweredBy.HUMAN,
        duration_seconds=50,
        price=Decimal("0.013"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
    )
    add_call(
        campaign,
        answered_by=AnsweredBy.HUMAN,
        duration_seconds=70,
        price=Decimal("0.017"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
    )
    add_call(campaign, Call.Status.BUSY, price_status=Call.PriceStatus.NOT_CHARGED)

    # when staff open its page
    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    # then they read the counters, as calls.reports.stats counts them
    assert tile(page, "live-calls") == "1"
    assert tile(page, "answer-rate") == "67%"
    assert tile(page, "average-duration") == "1:00"
    # the live call's price is still to come
    assert tile(page, "cost") == (
        "0.03 USD (telephony 0.03, speech 0, model 0); telephony price pending for 1 call"
    )
    assert tile(page, "opted-out") == "0"
    assert '<span class="figure">0 / 5</span>' in page
    pending = r'<tr data-key="pending"><th scope="row">Pending</th><td class="count">1</td>'
    assert re.search(pending, page)
    calling = r'<tr data-key="calling"><th scope="row">Calling</th><td class="count">4</td>'
    assert re.search(calling, page)
    in_progress = (
        r'<tr data-key="in-progress"><th scope="row">In progress</th><td class="count">1</td>'
    )
    assert re.search(in_progress, page)


def test_campaign_page_says_why_a_completed_campaign_called_nobody(admin_client, campaign) -> None:
    # given a campaign whose contacts all lack the first name its template speaks
    add_contact(campaign, Contact.State.FAILED)
    add_contact(campaign, Contact.State.FAILED)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    with translation.override("en"):
        services.complete_campaign(campaign=campaign)

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert (
        '<span class="campaign-state-reason">(No call was made: of its 2 contacts, 2 lack '
        "first_name.)</span>"
    ) in page


def test_campaign_page_draws_its_charts_from_the_calls(admin_client, campaign) -> None:
    # given calls over the last three hours: 3 two hours ago (1 answered of 2 ended), 1 now
    now = timezone.now()
    two_hours_ago = now - datetime.timedelta(hours=2)
    add_call(campaign, answered_by=AnsweredBy.HUMAN, created_at=two_hours_ago)
    add_call(campaign, Call.Status.NO_ANSWER, created_at=two_hours_ago)
    add_call(campaign, Call.Status.PENDING, created_at=two_hours_ago)
    add_call(campaign, answered_by=AnsweredBy.HUMAN, created_at=now)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)

    # when staff open its page
    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    # then each chart is an SVG image named by its title and description, drawn from them
    for key, title in [
        ("calls-per-hour", "Calls per hour"),
        ("outcomes", "Outcomes"),
        ("answer-rate", "Answer rate per hour"),
    ]:
        svg = re.search(rf'<figure class="[^"]*" id="chart-{key}">(.*?)</figure>', page, re.S)
        assert svg, key
        assert f'role="img" aria-labelledby="chart-{key}-title chart-{key}-desc"' in svg.group(1)
        assert f'<title id="chart-{key}-title">{title}</title>' in svg.group(1)
    hourly = re.search(r'id="chart-calls-per-hour">(.*?)</figure>', page, re.S).group(1)
    assert hourly.count('<rect class="chart-bar"') == 24
    hour = timezone.localtime(two_hours_ago).strftime("%H:00")
    assert f"<title>{hour}: 3</title>" in hourly
    assert f'<tr><th scope="row">{hour}</th><td>3</td></tr>' in hourly
    assert "4 calls in all, at most 3 in one hour." in hourly
    outcomes = re.search(r'id="chart-outcomes">(.*?)</figure>', page, re.S).group(1)
    answered = '<tr><th scope="row">Answered by a person</th><td>2 (67%)</td></tr>'
    assert answered in outcomes
    assert '<tr><th scope="row">No answer</th><td>1 (33%)</td></tr>' in outcomes
    rate = re.search(r'id="chart-answer-rate">(.*?)</figure>', page, re.S).group(1)
    assert f'<tr><th scope="row">{hour}</th><td>50% (1 of 2)</td></tr>' in rate
    assert rate.count('<circle class="chart-dot"') == 2  # hours without ended calls: none


def test_charts_of_a_campaign_without_calls_say_so(admin_client, campaign) -> None:
    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert page.count(">No calls yet</text>") == 3
    assert "0 calls in all" in page


def test_charts_keep_svg_numbers_unlocalised_in_spanish(admin_client, campaign) -> None:
    # given a bar whose geometry has decimals, on a page in Spanish (decimal comma)
    add_call(campaign, answered_by=AnsweredBy.HUMAN)
    Campaign.objects.filter(pk=campaign.pk).update(calls_per_second=Decimal("0.5"))

    page = admin_client.get(change_url(campaign), headers={"accept-language": "es"})

    html = page.content.decode()
    assert "Llamadas por hora" in html
    assert re.search(r'<rect class="chart-bar" x="\d+\.\d+"', html)
    assert not re.search(r'(x|y|width|height)="\d+,\d+"', html)
    assert '<td class="configured">0,5</td>' in html  # text is localised


def test_calls_by_hour_lists_every_hour_with_answered_and_ended(campaign) -> None:
    now = timezone.now()
    add_call(campaign, answered_by=AnsweredBy.HUMAN, created_at=now - datetime.timedelta(hours=5))
    add_call(campaign, Call.Status.BUSY, created_at=now - datetime.timedelta(hours=5))
    add_call(campaign, answered_by=AnsweredBy.MACHINE_START, created_at=now)
    add_call(campaign, created_at=now - datetime.timedelta(hours=30))  # before the window

    hours = calls_by_hour(campaign=campaign, until=now, hours=24)

    assert len(hours) == 24
    assert [h.start for h in hours] == sorted(h.start for h in hours)
    assert hours[-1].start <= now < hours[-1].start + datetime.timedelta(hours=1)
    busy_hour = hours[-6]
    assert (busy_hour.calls, busy_hour.answered, busy_hour.ended) == (2, 1, 2)
    assert busy_hour.answer_rate == 0.5
    assert (hours[-1].calls, hours[-1].answered, hours[-1].ended) == (1, 0, 1)
    assert sum(hour.calls for hour in hours) == 3
    assert hours[0].answer_rate is None


def test_calls_by_hour_keeps_24_hours_across_a_clock_change(campaign) -> None:
    # the night Spain puts its clocks back (2025-10-26, 03:00 CEST becomes 02:00 CET)
    with timezone.override("Europe/Madrid"):
        until = datetime.datetime(2025, 10, 26, 12, 30, tzinfo=datetime.UTC)
        add_call(campaign, created_at=datetime.datetime(2025, 10, 26, 0, 30, tzinfo=datetime.UTC))
        add_call(campaign, created_at=datetime.datetime(2025, 10, 26, 1, 30, tzinfo=datetime.UTC))

        hours = calls_by_hour(campaign=campaign, until=until, hours=24)

    steps = {
        b.start.astimezone(datetime.UTC) - a.start.astimezone(datetime.UTC)
        for a, b in pairwise(hours)
    }
    assert steps == {datetime.timedelta(hours=1)}
    assert [h.calls for h in hours if h.calls] == [1, 1]  # 02:00 twice, each its own hour


def test_a_finished_campaign_charts_its_last_day_of_calls(campaign) -> None:
    last_week = timezone.now() - datetime.timedelta(days=7)
    add_call(campaign, answered_by=AnsweredBy.HUMAN, created_at=last_week)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.COMPLETED)
    campaign.refresh_from_db()

    dashboard = campaign_dashboard(campaign=campaign)

    hourly = dashboard.charts[0]
    assert [row for row in hourly.rows if row[1] != "0"] == [
        (timezone.localtime(last_week).strftime("%H:00"), "1")
    ]
    assert dashboard.refresh_seconds == 0


def test_a_running_campaign_page_refreshes_its_figures(admin_client, campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    figures = reverse("admin:campaigns_campaign_figures", args=[campaign.pk])

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()
    fragment = admin_client.get(figures, headers=ENGLISH).content.decode()

    assert f'<div id="campaign-dashboard" data-url="{figures}" data-refresh="10">' in page
    assert fragment.strip().startswith(f'<div id="campaign-dashboard" data-url="{figures}"')
    assert "<html" not in fragment
    assert buttons(fragment) == ["Pause campaign", "Cancel campaign…"]
    assert "They refresh every 10 seconds while the page is open." in page


# --- The campaign's page: pacing limits in effect -----------------------------------------


def pacing_row(page: str, key: str) -> dict[str, str]:
    row = re.search(rf'<tr data-key="{key}">(.*?)</tr>', page, re.S).group(1)
    return dict(re.findall(r'<td class="(\w+)">(?:<strong>)?([^<]*)', row))


def test_pacing_shows_the_campaign_rate_when_below_the_platform_cap(
    admin_client, campaign, settings
) -> None:
    settings.TWILIO_MAX_CPS = 10
    Campaign.objects.filter(pk=campaign.pk).update(calls_per_second=Decimal("0.5"))

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert pacing_row(page, "calls_per_second") == {
        "configured": "0.5",
        "cap": (
            "10 (TWILIO_MAX_CPS, for the whole account); 999 (the partner&#x27;s cap, for "
            "all its campaigns)"
        ),
        "effective": "0.5",
        "binds": "This campaign&#x27;s setting",
    }


def test_pacing_shows_the_platform_cap_when_it_binds(admin_client, campaign, settings) -> None:
    settings.TWILIO_MAX_CPS = 2
    Campaign.objects.filter(pk=campaign.pk).update(
        calls_per_second=Decimal("5"), max_concurrent_calls=8
    )

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert pacing_row(page, "calls_per_second") == {
        "configured": "5",
        "cap": (
            "2 (TWILIO_MAX_CPS, for the whole account); 999 (the partner&#x27;s cap, for "
            "all its campaigns)"
        ),
        "effective": "2",
        "binds": "The platform cap (TWILIO_MAX_CPS)",
    }
    assert pacing_row(page, "max_concurrent_calls") == {
        "configured": "8",
        "cap": "1000 (the partner&#x27;s cap, for all its campaigns)",
        "effective": "8",
        "binds": "This campaign&#x27;s setting",
    }


def test_pacing_says_when_the_rate_binds_before_the_concurrency_limit(
    admin_client, campaign, settings
) -> None:
    # given 0.1 calls per second and answered calls of 30 s: about 3 at once, of 5 allowed
    settings.TWILIO_MAX_CPS = 10
    Campaign.objects.filter(pk=campaign.pk).update(
        calls_per_second=Decimal("0.1"), max_concurrent_calls=5
    )
    add_call(campaign, answered_by=AnsweredBy.HUMAN, duration_seconds=30)

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert pacing_row(page, "max_concurrent_calls")["binds"] == (
        "Not reached: the calls per second bind first"
    )
    assert (
        "At 0.1 calls per second, with answered calls lasting 0:30 on average, about 3 "
        "calls go on at once, against a limit of 5."
    ) in page


def test_pacing_notes_the_cap_shared_with_other_running_campaigns(
    admin_client, campaign, partner, settings
) -> None:
    # given three running campaigns sharing an account of 3 calls per second
    settings.TWILIO_MAX_CPS = 3
    for name in ("Other", "Third"):
        CampaignFactory(
            partner=partner, name=name, template=campaign.template, state=Campaign.State.RUNNING
        )
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.RUNNING, calls_per_second=Decimal("2")
    )

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert (
        "TWILIO_MAX_CPS is shared in turns with 2 other running campaigns: while all have "
        "calls to make, this one gets about 1 calls per second. The shared cap then binds, "
        "not this campaign&#x27;s setting."
    ) in page


def test_pacing_warns_while_twilio_holds_the_campaign_back(admin_client, campaign) -> None:
    back_off_campaign(campaign.pk)

    page = admin_client.get(change_url(campaign), headers=ENGLISH).content.decode()

    assert 'id="campaign-held-back"' in page
