from __future__ import annotations

import datetime
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from campaigns import services
from campaigns.models import Campaign, DoNotCall
from campaigns.services import (
    CampaignStateError,
    add_contact,
    add_do_not_call,
    advance_campaigns,
    cancel_campaign,
    create_partner,
    pause_campaign,
    resume_campaign,
    start_campaign,
    transition_campaign,
)
from tests.factories import (
    CallFactory,
    CampaignFactory,
    ContactFactory,
    DoNotCallFactory,
    VoiceFactory,
)
from voices import services as voice_services
from voices.models import Voice
from voices.services import RETRY_SYNC_CLAIM, queue_voice_sync

pytestmark = pytest.mark.django_db


def test_create_partner_refuses_duplicate_names(partner) -> None:
    with pytest.raises(ValidationError) as excinfo:
        create_partner(name=f"  {partner.name} ")

    assert "name" in excinfo.value.message_dict


def test_transition_campaign_follows_the_state_machine(campaign) -> None:
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.PAUSED)
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.COMPLETED)

    campaign.refresh_from_db()
    assert campaign.state == "completed"
    assert campaign.state_changed_at is not None


@pytest.mark.parametrize(
    ("start", "target"),
    [("draft", "paused"), ("draft", "completed"), ("completed", "running"), ("cancelled", "draft")],
)
def test_transition_campaign_refuses_moves_the_machine_forbids(campaign, start, target) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=start)
    campaign.refresh_from_db()

    with pytest.raises(CampaignStateError) as excinfo:
        transition_campaign(campaign=campaign, to=target)

    assert "no puede pasar" in str(excinfo.value)  # Spanish first
    campaign.refresh_from_db()
    assert campaign.state == start


def test_transition_campaign_loses_to_a_concurrent_move(campaign) -> None:
    # given a stale copy of a campaign that someone else already started and cancelled
    stale = Campaign.objects.get(pk=campaign.pk)
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.CANCELLED)

    # when the stale copy tries to schedule it
    with translation.override("en"), pytest.raises(CampaignStateError, match="meanwhile"):
        transition_campaign(campaign=stale, to=Campaign.State.RUNNING)

    # then nothing was written and the copy now knows the real state
    assert stale.state == "cancelled"
    campaign.refresh_from_db()
    assert campaign.state == "cancelled"


def test_add_contact_normalises_and_derives_time_zone(campaign) -> None:
    contact, created = add_contact(
        campaign=campaign, phone="91 000 00 00", variables={"name": "Ana"}
    )

    assert created
    assert contact.phone == "+34910000000"
    assert contact.time_zone == "Europe/Madrid"
    assert contact.variables == {"name": "Ana"}


@pytest.mark.parametrize("phone", ["+1 800 555 0100", "600 12 34 56"])
def test_add_contact_leaves_zone_empty_when_number_spans_several(campaign, phone) -> None:
    # toll-free US numbers ring anywhere; Spanish mobiles may be on the Canaries (an
    # hour behind the mainland): eligibility then checks every candidate zone
    contact, _ = add_contact(campaign=campaign, phone=phone)

    assert contact.time_zone == ""


def test_add_contact_merges_duplicate_phone(campaign) -> None:
    first, _ = add_contact(campaign=campaign, phone="+34600123456", variables={"name": "Ana"})

    second, created = add_contact(
        campaign=campaign, phone="600123456", variables={"city": "Madrid"}
    )

    assert not created
    assert second.pk == first.pk
    assert second.variables == {"name": "Ana", "city": "Madrid"}
    assert campaign.contacts.count() == 1


def test_add_contact_reimport_by_external_id_is_idempotent(campaign) -> None:
    first, _ = add_contact(campaign=campaign, phone="+34600123456", external_id="crm-7")

    again, created = add_contact(
        campaign=campaign, phone="600123456", external_id="crm-7", variables={"city": "Ávila"}
    )

    assert not created and again.pk == first.pk
    assert again.variables == {"city": "Ávila"}
    assert campaign.contacts.count() == 1


def test_add_contact_refuses_an_external_id_of_another_phone(campaign) -> None:
    add_contact(campaign=campaign, phone="+34600123456", external_id="crm-7")

    with pytest.raises(ValidationError) as excinfo:
        add_contact(campaign=campaign, phone="+34600999999", external_id="crm-7")

    assert "crm-7" in excinfo.value.message_dict["phone"][0]
    assert list(campaign.contacts.values_list("phone", flat=True)) == ["+34600123456"]


def test_add_contact_refuses_invalid_phone_and_zone(campaign) -> None:
    with pytest.raises(ValidationError) as excinfo:
        add_contact(campaign=campaign, phone="12")
    assert excinfo.value.code == "invalid_phone"

    with pytest.raises(ValidationError) as excinfo:
        add_contact(campaign=campaign, phone="+34600123456", time_zone="Europe/Atlantis")
    assert "time_zone" in excinfo.value.message_dict
    assert campaign.contacts.count() == 0


def test_add_do_not_call_is_idempotent_and_scoped(partner, admin_user) -> None:
    entry, created = add_do_not_call(
        phone="600 12 34 56", partner=partner, source=DoNotCall.Source.STAFF, by=admin_user
    )
    again, created_again = add_do_not_call(phone="+34600123456", partner=partner, source="opt_out")
    global_entry, global_created = add_do_not_call(
        phone="+34600123456", partner=None, source="staff"
    )

    assert created and not created_again and global_created
    assert again.pk == entry.pk
    assert again.source == "staff" and again.created_by == admin_user
    assert global_entry.partner is None
    assert DoNotCall.objects.count() == 2


def test_add_do_not_call_refuses_unknown_source(partner) -> None:
    with pytest.raises(ValidationError) as excinfo:
        add_do_not_call(phone="+34600123456", partner=partner, source="rumour")

    assert "source" in excinfo.value.message_dict


@pytest.fixture
def startable(campaign) -> Campaign:
    """A draft with everything a start needs: lint-clean template, caller number, a contact."""
    campaign.caller_number = "+34910000000"
    campaign.save(update_fields=["caller_number"])
    add_contact(campaign=campaign, phone="+34910000001", variables={"first_name": "Ana"})
    return campaign


def test_start_campaign_runs_a_ready_draft(startable) -> None:
    start_campaign(campaign=startable)

    startable.refresh_from_db()
    assert startable.state == "running"


def test_start_campaign_with_a_start_ahead_schedules_it(startable) -> None:
    startable.starts_at = timezone.now() + datetime.timedelta(days=1)
    startable.save(update_fields=["starts_at"])

    start_campaign(campaign=startable)

    assert startable.state == "scheduled"


def test_start_campaign_refuses_listing_every_reason_at_once(campaign, call_template) -> None:
    # given a template failing its lint, no caller number, no contacts, an end in the past
    call_template.greeting = "Hola {{ first_name }}."
    call_template.voicemail_message = "Llámenos."
    call_template.save()
    campaign.ends_at = timezone.now() - datetime.timedelta(days=1)
    campaign.save(update_fields=["ends_at"])

    # when
    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=campaign)

    # then every reason is given, and the campaign stays a draft
    message = str(excinfo.value)
    assert "name the company" in message
    assert "automated assistant" in message
    assert "number to call back" in message
    assert "No caller number" in message
    assert "no contacts waiting" in message
    assert "end date has passed" in message
    assert len(excinfo.value.reasons) >= 6
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_start_campaign_refuses_without_template(startable) -> None:
    startable.template = None
    startable.save(update_fields=["template"])

    with translation.override("en"), pytest.raises(CampaignStateError, match="no call template"):
        start_campaign(campaign=startable)


def test_start_campaign_refuses_a_spanish_mobile_caller_number(startable) -> None:
    startable.caller_number = "+34600123456"
    startable.save(update_fields=["caller_number"])

    with translation.override("en"), pytest.raises(CampaignStateError, match="mobile"):
        start_campaign(campaign=startable)


def test_start_campaign_needs_a_voice_only_when_elevenlabs_is_configured(
    startable, settings, fake_elevenlabs
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"
    with translation.override("en"), pytest.raises(CampaignStateError, match="No voice"):
        start_campaign(campaign=startable)

    settings.ELEVENLABS_API_KEY = ""
    start_campaign(campaign=startable)
    assert startable.state == "running"


def test_start_campaign_refusal_names_the_default_voice_setting_and_the_fix(
    startable, settings, fake_elevenlabs
) -> None:
    # given a campaign without a voice, and a default that names no ElevenLabs voice
    settings.ELEVENLABS_DEFAULT_VOICE = "Bellla"

    # when
    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    # then the one reason names the setting, its value and what to do
    (reason,) = excinfo.value.reasons
    assert "ELEVENLABS_DEFAULT_VOICE is “Bellla”" in reason
    assert "Choose a voice for the campaign" in reason
    assert "set ELEVENLABS_DEFAULT_VOICE to a voice id" in reason
    startable.refresh_from_db()
    assert startable.state == "draft"


def test_start_campaign_fetches_the_default_voice_by_its_legacy_name(
    startable, settings, fake_elevenlabs
) -> None:
    # given the guide's default and an empty catalogue (never synced)
    settings.ELEVENLABS_DEFAULT_VOICE = "Bella"
    assert not Voice.objects.exists()

    # when
    start_campaign(campaign=startable)

    # then Bella's id was fetched (Sarah today), before any call needs it
    assert startable.state == "running"
    assert [r.path for r in fake_elevenlabs.requests] == ["/v1/voices/EXAVITQu4vr4xnSDxMaL"]
    assert Voice.objects.get().name == "Sarah"


def test_start_campaign_says_when_elevenlabs_cannot_be_asked_for_the_default_voice(
    startable, settings, fake_elevenlabs, django_capture_on_commit_callbacks
) -> None:
    settings.ELEVENLABS_MAX_RETRIES = 0
    fake_elevenlabs.fail_next(503)

    with (
        translation.override("en"),
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(CampaignStateError) as excinfo,
    ):
        start_campaign(campaign=startable)

    (reason,) = excinfo.value.reasons
    assert "could not be asked for the default voice" in reason and "“Bella”" in reason
    assert "being fetched in the background: try again in a minute or two" in reason
    # and a sync is queued once the refusal is committed, retried while ElevenLabs is down
    (queue,) = callbacks
    assert queue.func is queue_voice_sync and queue.keywords == {"claim": RETRY_SYNC_CLAIM}


def test_start_campaign_syncs_the_catalogue_when_it_finds_no_voice(
    startable, settings, fake_elevenlabs
) -> None:
    # given a default voice named as the account names it, and a catalogue never synced
    settings.ELEVENLABS_DEFAULT_VOICE = "George"
    assert not Voice.objects.exists()

    # when staff start a campaign without a voice of its own
    start_campaign(campaign=startable)

    # then the catalogue was fetched there and then, and the campaign calls
    assert startable.state == "running"
    assert [r.path for r in fake_elevenlabs.requests] == ["/v2/voices"]
    assert set(Voice.objects.values_list("name", flat=True)) == {"Sarah", "George"}


def test_start_campaign_refusal_after_a_sync_does_not_list_again_at_once(
    startable, settings, fake_elevenlabs
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"

    for _attempt in range(3):
        with translation.override("en"), pytest.raises(CampaignStateError, match="No voice"):
            start_campaign(campaign=startable)

    assert [r.path for r in fake_elevenlabs.requests] == ["/v2/voices"]


def test_start_campaign_names_a_refused_key_when_it_lists_the_voices(
    startable, settings, fake_elevenlabs
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "George"
    settings.ELEVENLABS_API_KEY = "revoked"

    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    (reason,) = excinfo.value.reasons
    assert "refused to list the voices (HTTP 401: Invalid API key)" in reason
    assert "Check ELEVENLABS_API_KEY" in reason
    startable.refresh_from_db()
    assert startable.state == "draft"


def test_start_campaign_waits_for_the_voices_only_a_few_seconds(
    startable, settings, fake_elevenlabs, monkeypatch
) -> None:
    # given ElevenLabs hanging
    settings.ELEVENLABS_DEFAULT_VOICE = "George"
    settings.ELEVENLABS_TIMEOUT = 1.0
    monkeypatch.setattr(voice_services, "LOOKUP_SECONDS", 2.0)
    fake_elevenlabs.delay = 10.0

    # when staff start the campaign
    started = time.monotonic()
    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    # then the refusal came at the lookup's deadline, saying what happens next
    assert time.monotonic() - started < 4.0
    (reason,) = excinfo.value.reasons
    assert "gave up at the deadline" in reason
    assert "being fetched in the background" in reason


def test_start_campaign_with_its_own_voice_asks_nothing(
    startable, settings, fake_elevenlabs
) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "Nobody"
    startable.voice = VoiceFactory(provider_voice_id="v1", name="Own")
    startable.save(update_fields=["voice"])

    start_campaign(campaign=startable)

    assert startable.state == "running"
    assert fake_elevenlabs.requests == []


def test_start_campaign_reports_incoherent_settings(startable) -> None:
    startable.calling_windows = {"mon": [["25:00", "26:00"]]}
    startable.save(update_fields=["calling_windows"])

    with translation.override("en"), pytest.raises(CampaignStateError, match="25:00"):
        start_campaign(campaign=startable)


def test_pause_resume_cancel_follow_the_lifecycle(startable) -> None:
    start_campaign(campaign=startable)
    pause_campaign(campaign=startable)
    assert startable.state == "paused"
    resume_campaign(campaign=startable)
    assert startable.state == "running"
    cancel_campaign(campaign=startable)
    assert startable.state == "cancelled"

    with pytest.raises(CampaignStateError):
        resume_campaign(campaign=startable)


def test_resume_campaign_checks_again(startable) -> None:
    start_campaign(campaign=startable)
    pause_campaign(campaign=startable)
    startable.template.greeting = "Hola {{ first_name }}."
    startable.template.save()

    with pytest.raises(CampaignStateError):
        resume_campaign(campaign=startable)
    assert startable.state == "paused"


def test_advance_campaigns_starts_scheduled_and_completes_finished(startable, partner) -> None:
    # given a scheduled campaign whose start has come, and a running one with nobody left
    now = timezone.now()
    startable.starts_at = now + datetime.timedelta(minutes=5)
    startable.save(update_fields=["starts_at"])
    start_campaign(campaign=startable)
    finished = CampaignFactory(partner=partner, name="Done", state="running")
    ContactFactory(campaign=finished, phone="+34910000009", state="done")

    # when beat looks at the calendar after the start
    counts = advance_campaigns(now=now + datetime.timedelta(minutes=10))

    # then
    assert counts == {"started": 1, "completed": 1}
    startable.refresh_from_db()
    finished.refresh_from_db()
    assert (startable.state, finished.state) == ("running", "completed")


def test_advance_campaigns_completes_campaigns_past_their_end(startable) -> None:
    start_campaign(campaign=startable)
    Campaign.objects.filter(pk=startable.pk).update(ends_at=timezone.now())

    assert advance_campaigns(now=timezone.now() + datetime.timedelta(seconds=1))["completed"] == 1


def test_advance_campaigns_leaves_campaigns_with_contacts_waiting(startable) -> None:
    start_campaign(campaign=startable)

    assert advance_campaigns()["completed"] == 0


def test_transition_campaign_to_running_queues_voicing_after_commit(
    campaign, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("campaigns.tasks.prerender_campaign_speech_task.delay", queued.append)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    assert queued == []  # nothing is queued before the transaction commits
    for callback in callbacks:
        callback()
    assert queued == [campaign.pk]


def test_create_campaign_reports_a_taken_name_on_the_name(campaign) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.create_campaign(partner=campaign.partner, name=campaign.name)

    assert list(excinfo.value.message_dict) == ["name"]


def test_update_campaign_refuses_a_running_campaign(campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)

    with pytest.raises(CampaignStateError):
        services.update_campaign(campaign=campaign, name="Renamed")

    campaign.refresh_from_db()
    assert campaign.name == "Spring"


def test_update_campaign_saves_only_what_changed(campaign) -> None:
    updated = services.update_campaign(campaign=campaign, max_attempts=5)

    campaign.refresh_from_db()
    assert updated.max_attempts == campaign.max_attempts == 5


def test_add_do_not_call_numbers_for_every_partner(partner) -> None:
    # given a global entry already there
    DoNotCallFactory(partner=None, phone="+34600000001")

    # when
    batch = services.add_do_not_call_numbers(
        phones=["600000001", "600000002", "600000002", "x"], partner=None, source="staff"
    )

    # then
    assert (batch.created, batch.existing) == (1, 2)
    assert [(error.index, error.value) for error in batch.errors] == [(3, "x")]
    assert DoNotCall.objects.filter(partner=None).count() == 2
    assert not DoNotCall.objects.filter(partner=partner).exists()


def test_remove_do_not_call_keeps_opt_outs_unless_staff(partner) -> None:
    entry = DoNotCallFactory(partner=partner, phone="+34600000001", source=DoNotCall.Source.OPT_OUT)

    with pytest.raises(services.DoNotCallProtected):
        services.remove_do_not_call(entry=entry, by_staff=False)
    services.remove_do_not_call(entry=entry, by_staff=True)

    assert not DoNotCall.objects.exists()


def test_create_campaign_keeps_its_numbers_in_e164_as_contacts_are(partner) -> None:
    # when numbers are written as people write them, in the campaign's region
    created = services.create_campaign(
        partner=partner,
        name="Numbers",
        caller_number="910 00 00 00",
        transfer_number="0034 (910) 000-999",
    )

    # then they are kept as add_contact keeps a contact's
    created.refresh_from_db()
    assert (created.caller_number, created.transfer_number) == ("+34910000000", "+34910000999")


def test_update_campaign_reads_the_caller_number_in_the_new_region(campaign) -> None:
    updated = services.update_campaign(
        campaign=campaign, phone_region="US", caller_number="(415) 555-2671"
    )

    updated.refresh_from_db()
    assert updated.caller_number == "+14155552671"


def test_create_campaign_refuses_a_caller_number_naming_field_and_value(partner) -> None:
    with translation.override("en"), pytest.raises(ValidationError) as excinfo:
        services.create_campaign(partner=partner, name="Bad", caller_number="91000")

    # one message, on the field, naming the value and the region it was read in
    assert excinfo.value.message_dict == {
        "caller_number": ["“91000” is not a valid phone number (region ES)."]
    }
    assert not Campaign.objects.filter(name="Bad").exists()


def test_start_campaign_still_refuses_a_stored_caller_number_that_is_no_number(startable) -> None:
    # given a number saved before it was checked on save (E.164-shaped, but no number)
    Campaign.objects.filter(pk=startable.pk).update(caller_number="+3491000000")
    startable.refresh_from_db()

    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    assert sorted(excinfo.value.reasons) == [
        "Caller number: “+3491000000” is not a valid phone number in E.164 form, e.g. "
        "+34910000000.",
        # nor, being none, one of the numbers staff allow the partner
        "The caller number +3491000000 is not one of this partner's numbers: "
        + ", ".join(startable.partner.caller_numbers)
        + ".",
    ]


@pytest.fixture
def uncallable(startable, partner) -> Campaign:
    """``startable`` whose four contacts waiting can none be called: three lack first_name
    (one has only blanks), two are on a do-not-call list (one of them lacks it too)."""
    startable.contacts.all().delete()
    for phone, variables in [
        ("+34910000001", {}),
        ("+34910000002", {"first_name": "  "}),
        ("+34910000003", {"first_name": "Ana"}),
        ("+34910000004", {"last_name": "Ruiz"}),
    ]:
        add_contact(campaign=startable, phone=phone, variables=variables)
    DoNotCallFactory(partner=partner, phone="+34910000003")
    DoNotCallFactory(partner=None, phone="+34910000004")
    return startable


def test_start_campaign_refuses_when_no_contact_waiting_can_be_called(uncallable) -> None:
    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=uncallable)

    # then the one reason says what is missing, and for how many
    assert excinfo.value.reasons == [
        "None of the 4 contacts waiting can be called: 3 lack first_name, 2 are on a "
        "do-not-call list. Give them the missing variables (import them again with those "
        "columns: rows merge into the contacts they match), or a default in the template's "
        "lines."
    ]
    uncallable.refresh_from_db()
    assert uncallable.state == "draft"


def test_start_campaign_with_some_contacts_callable_runs_and_warns(uncallable, partner) -> None:
    # given one more contact, callable: another partner's list does not hold for this one
    add_contact(campaign=uncallable, phone="+34910000005", variables={"first_name": "Eva"})
    other = services.create_partner(name="Other")
    DoNotCallFactory(partner=other, phone="+34910000005")

    start_campaign(campaign=uncallable)

    assert uncallable.state == "running"
    with translation.override("en"):
        assert services.start_warnings(campaign=uncallable) == [
            "4 of the 5 contacts waiting cannot be called: 3 lack first_name, 2 are on a "
            "do-not-call list."
        ]


def test_start_campaign_counts_what_the_template_needs_now(startable, call_template) -> None:
    # given a contact imported with first_name; then the template comes to need the day
    call_template.variables = {"first_name": "Lucía", "day": "lunes"}
    call_template.instructions = "Confirma la cita de {{ first_name }} el {{ day }}."
    call_template.save()

    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    (reason,) = excinfo.value.reasons
    assert reason.startswith("The one contact waiting cannot be called: 1 lacks day.")


def test_start_campaign_ignores_variables_with_a_default(uncallable, call_template) -> None:
    # given lines that say first_name only when there is one
    call_template.greeting = (
        "Hola{% if first_name %} {{ first_name }}{% endif %}. Le llamamos de {{ partner }}. "
        "Soy un asistente automático."
    )
    call_template.instructions = "Confirma la cita de {{ first_name|default:'la persona' }}."
    call_template.save()
    DoNotCall.objects.all().delete()

    start_campaign(campaign=uncallable)

    assert uncallable.state == "running"
    assert services.start_warnings(campaign=uncallable) == []


def test_start_campaign_without_contacts_says_how_many_rows_its_imports_rejected(
    startable,
) -> None:
    startable.contacts.all().delete()
    startable.imports.create(file_name="a.csv", state="done", error_count=2)
    startable.imports.create(file_name="b.csv", state="done", error_count=1)

    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=startable)

    assert excinfo.value.reasons == [
        "The campaign has no contacts waiting to be called. Its imports rejected 3 rows; "
        "their reports say why."
    ]


def test_resume_campaign_refuses_when_nobody_waiting_can_be_called(uncallable) -> None:
    transition_campaign(campaign=uncallable, to=Campaign.State.RUNNING)
    pause_campaign(campaign=uncallable)

    with translation.override("en"), pytest.raises(CampaignStateError, match="None of the 4"):
        resume_campaign(campaign=uncallable)


def test_complete_campaign_that_placed_a_call_has_no_reason(startable) -> None:

    start_campaign(campaign=startable)
    contact = startable.contacts.get()
    CallFactory(
        campaign=startable,
        contact=contact,
        attempt=1,
        status="no-answer",
        provider_sid="CA" + "0" * 32,
        from_number="+34910000000",
        to_number=contact.phone,
    )

    services.complete_campaign(campaign=startable)

    startable.refresh_from_db()
    assert (startable.state, startable.state_reason) == ("completed", "")


def test_complete_campaign_without_contacts_says_so(startable) -> None:
    start_campaign(campaign=startable)
    startable.contacts.all().delete()

    with translation.override("en"):
        services.complete_campaign(campaign=startable)

    assert startable.state_reason == "No call was made: the campaign has no contacts."


def test_a_campaign_past_its_end_before_any_call_says_who_was_still_waiting(
    startable, partner
) -> None:
    # given a running campaign with two contacts waiting and one lacking its first name,
    # whose end date comes before the dispatcher called anyone
    add_contact(campaign=startable, phone="+34910000002", variables={"first_name": "Eva"})
    add_contact(campaign=startable, phone="+34910000003")
    start_campaign(campaign=startable)
    Campaign.objects.filter(pk=startable.pk).update(ends_at=timezone.now())

    # when
    with translation.override("en"):
        advance_campaigns(now=timezone.now() + datetime.timedelta(seconds=1))

    # then
    startable.refresh_from_db()
    assert startable.state == "completed"
    assert startable.state_reason == (
        "No call was made: of its 3 contacts, 1 lacks first_name; 2 were still waiting for "
        "their time to call when the campaign ended."
    )
