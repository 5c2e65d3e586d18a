"""The legal basis for calling: a marketing campaign dials only contacts whose basis its
compliance profile accepts (US-5, ES-3/ES-4), says why not, and every change is audited."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from audit.models import AuditEntry
from audit.services import subject_hash
from calls.dispatcher import dispatch
from calls.models import Call
from calls.outcomes import opt_out
from campaigns import rules
from campaigns.eligibility import ReasonCode, count_blocked, evaluate
from campaigns.models import Campaign, Contact, LegalBasis, parse_moment
from campaigns.services import add_contact, opt_out_contact, update_contact
from campaigns.services.lifecycle import start_warnings
from tests.factories import CallFactory, CampaignFactory, ContactFactory

# A Wednesday at noon in Madrid: inside every profile's calling window.
NOON = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)
OBTAINED = datetime.datetime(2026, 1, 10, 9, 0, tzinfo=datetime.UTC)
CONSENT = {
    "legal_basis": "consent",
    "basis_source": "web form example.com/alta",
    "basis_obtained_at": OBTAINED,
    "basis_wording": "Acepto que me llamen con ofertas.",
    "basis_scope": "ofertas de fibra",
}


@pytest.fixture
def marketing(campaign) -> Campaign:
    campaign.state = Campaign.State.RUNNING
    campaign.purpose = "marketing"
    campaign.compliance_profile = "es"
    campaign.caller_number = "+34910000000"
    campaign.max_concurrent_calls = 100
    campaign.calls_per_second = 100
    campaign.save()
    return campaign


@pytest.fixture(autouse=True)
def generous_account(settings, tmp_path) -> None:
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)


def contact(campaign: Campaign, number: int, **basis) -> Contact:
    return ContactFactory(
        campaign=campaign,
        phone=f"+3491{number:07d}",
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        **basis,
    )


def verdict_codes(contact: Contact, now: datetime.datetime = NOON) -> list[ReasonCode]:
    return evaluate(
        contact=contact,
        campaign=contact.campaign,
        now=now,
        history=[],
        blocked_by_dnc=False,
        live_call=False,
    ).codes


# --- Rules as data -------------------------------------------------------------------------


def test_rules_accept_consent_only_for_marketing_under_us_and_es() -> None:
    profiles = rules.PROFILES
    assert profiles["us"].marketing_basis.accepted == {"consent"}
    assert profiles["us"].marketing_basis.rule == "US-5"
    assert profiles["es"].marketing_basis.accepted == {"consent"}
    assert "ES-4" in profiles["es"].marketing_basis.rule
    assert profiles["none"].marketing_basis.accepted == {"consent", "customer"}
    # the rules speak the model's values
    for profile in profiles.values():
        assert profile.marketing_basis.accepted <= set(LegalBasis.values)
        assert profile.marketing_basis.source


def test_rules_version_names_the_new_data() -> None:
    assert rules.RULES_DATA_VERSION == "2026.12.1"


# --- Eligibility -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "basis", "code"),
    [
        ("es", {}, ReasonCode.NO_LEGAL_BASIS),
        ("us", {}, ReasonCode.NO_LEGAL_BASIS),
        ("es", {"legal_basis": "customer", "basis_source": "CRM"}, ReasonCode.BASIS_NOT_ACCEPTED),
        ("us", {"legal_basis": "customer", "basis_source": "CRM"}, ReasonCode.BASIS_NOT_ACCEPTED),
        ("es", {"legal_basis": "service"}, ReasonCode.BASIS_NOT_ACCEPTED),
        ("none", {}, ReasonCode.NO_LEGAL_BASIS),
        ("es", {**CONSENT, "basis_expires_at": NOON}, ReasonCode.BASIS_EXPIRED),
        ("es", {**CONSENT, "basis_withdrawn_at": OBTAINED}, ReasonCode.BASIS_WITHDRAWN),
    ],
)
def test_evaluate_marketing_refuses_without_a_valid_basis(marketing, profile, basis, code) -> None:
    marketing.compliance_profile = profile
    subject = contact(marketing, 1, **basis)

    result = evaluate(
        contact=subject,
        campaign=marketing,
        now=NOON,
        history=[],
        blocked_by_dnc=False,
        live_call=False,
    )

    assert code in result.codes
    assert result.next_possible_at is None  # time alone never clears it
    reason = next(reason for reason in result.reasons if reason.code == code)
    assert reason.until is None
    rule = rules.PROFILES[profile].marketing_basis.rule
    if rule:
        assert rule in reason.message


def test_evaluate_marketing_message_names_the_rule_and_time(marketing, settings) -> None:
    settings.TIME_ZONE = "Europe/Madrid"
    subject = contact(marketing, 1, **CONSENT, basis_expires_at=NOON)

    with translation.override("en"):
        (reason,) = evaluate(
            contact=subject,
            campaign=marketing,
            now=NOON,
            history=[],
            blocked_by_dnc=False,
            live_call=False,
        ).reasons

    assert reason.message == "the legal basis expired at 2026-11-25 12:00 CET (ES-3, ES-4)"


def test_evaluate_marketing_dials_with_consent_and_none_accepts_customer(marketing) -> None:
    assert verdict_codes(contact(marketing, 1, **CONSENT)) == []
    # expiring later is fine
    later = contact(marketing, 2, **CONSENT, basis_expires_at=NOON + datetime.timedelta(days=1))
    assert verdict_codes(later) == []
    marketing.compliance_profile = "none"
    assert verdict_codes(contact(marketing, 3, legal_basis="customer", basis_source="CRM")) == []


def test_evaluate_service_campaign_needs_no_basis(campaign) -> None:
    campaign.state = Campaign.State.RUNNING
    campaign.save()
    assert campaign.purpose == "service"  # the default

    assert verdict_codes(contact(campaign, 1)) == []
    assert verdict_codes(contact(campaign, 2, **CONSENT, basis_withdrawn_at=OBTAINED)) == []


# --- Dispatching -----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["es", "us"])
def test_dispatch_marketing_dials_only_the_contact_with_consent(marketing, profile) -> None:
    marketing.compliance_profile = profile
    marketing.save()
    # US numbers ring in US hours: keep every contact in Madrid's zone, the profile's rule
    # on the basis is what differs.
    with_consent = contact(marketing, 1, **CONSENT)
    without = contact(marketing, 2)
    expired = contact(marketing, 3, **CONSENT, basis_expires_at=OBTAINED + datetime.timedelta(1))
    withdrawn = contact(marketing, 4, **CONSENT, basis_withdrawn_at=OBTAINED)
    customer = contact(marketing, 5, legal_basis="customer", basis_source="CRM")
    if profile == "us":
        Contact.objects.update(time_zone="America/New_York")
        noon = datetime.datetime(2026, 11, 25, 17, 0, tzinfo=datetime.UTC)
    else:
        noon = NOON

    result = dispatch(now=noon)

    assert list(Call.objects.values_list("contact_id", flat=True)) == [with_consent.pk]
    assert result.closed == 4
    states = dict(Contact.objects.values_list("pk", "state"))
    assert states[with_consent.pk] == "calling"
    for skipped in (without, expired, withdrawn, customer):
        assert states[skipped.pk] == "failed"


def test_dispatch_service_campaign_dials_contacts_without_a_basis(marketing) -> None:
    marketing.purpose = "service"
    marketing.save()
    contact(marketing, 1)

    assert len(dispatch(now=NOON).created) == 1


# --- Counting the blocked ------------------------------------------------------------------


def test_count_blocked_counts_contacts_without_a_valid_basis(marketing) -> None:
    contact(marketing, 1, **CONSENT)
    contact(marketing, 2)
    contact(marketing, 3, **CONSENT, basis_withdrawn_at=OBTAINED)
    contact(marketing, 4, **CONSENT, basis_expires_at=OBTAINED + datetime.timedelta(days=1))
    contact(marketing, 5, legal_basis="customer", basis_source="CRM")

    blocked = count_blocked(campaign=marketing, contacts=marketing.contacts.all())

    assert (blocked.total, blocked.blocked, blocked.no_legal_basis) == (5, 4, 4)
    with translation.override("en"):
        assert blocked.describe() == "4 have no valid legal basis for a marketing call"
        assert (
            "4 of the 5 contacts waiting cannot be called" in start_warnings(campaign=marketing)[0]
        )
    marketing.purpose = "service"
    assert count_blocked(campaign=marketing, contacts=marketing.contacts.all()).blocked == 0


# --- Validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("basis", "fields"),
    [
        ({"legal_basis": "consent"}, {"basis_obtained_at", "basis_source", "basis_wording"}),
        ({**CONSENT, "basis_expires_at": OBTAINED}, {"basis_expires_at"}),
        (
            {**CONSENT, "basis_obtained_at": timezone.now() + datetime.timedelta(days=1)},
            {"basis_obtained_at"},
        ),
        ({"basis_source": "web"}, {"basis_source"}),
    ],
)
def test_contact_clean_names_the_field_of_a_bad_basis(campaign, basis, fields) -> None:
    subject = Contact(campaign=campaign, phone="+34910000001", **basis)

    with pytest.raises(ValidationError) as error:
        subject.full_clean()

    assert set(error.value.message_dict) == fields


def test_parse_moment_reads_dates_and_naive_times_in_the_project_zone(settings) -> None:
    settings.TIME_ZONE = "Europe/Madrid"
    assert parse_moment("2026-05-31") == datetime.datetime(2026, 5, 30, 22, 0, tzinfo=datetime.UTC)
    assert parse_moment("2026-05-31T10:00") == datetime.datetime(
        2026, 5, 31, 8, 0, tzinfo=datetime.UTC
    )
    assert parse_moment("2026-05-31T10:00:00Z") == datetime.datetime(
        2026, 5, 31, 10, 0, tzinfo=datetime.UTC
    )
    with pytest.raises(ValueError, match="31/05/2026"):
        parse_moment("31/05/2026")


# --- Opt-out and audit -----------------------------------------------------------------------


def basis_entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="contact.basis_changed").order_by("seq"))


def test_opt_out_contact_withdraws_the_basis_and_audits_it(marketing) -> None:
    subject = contact(marketing, 1, **CONSENT)

    assert opt_out_contact(contact=subject, reason="no", now=NOON)

    subject.refresh_from_db()
    assert (subject.state, subject.basis_withdrawn_at) == ("opted_out", NOON)
    (entry,) = basis_entries()
    assert entry.subject == subject_hash(subject.phone)
    assert entry.actor_type == "callee"
    assert (entry.object_type, entry.object_id) == ("campaigns.contact", str(subject.pk))
    assert entry.details["old"]["withdrawn_at"] is None
    assert entry.details["new"]["withdrawn_at"] == NOON.isoformat()
    assert entry.details["via"] == "opt_out"
    assert subject.phone not in str(entry.details)
    assert CONSENT["basis_wording"] not in str(entry.details)
    # an opt-out said again keeps the first withdrawal and writes nothing more
    opt_out_contact(contact=subject, reason="no", now=NOON + datetime.timedelta(hours=1))
    subject.refresh_from_db()
    assert subject.basis_withdrawn_at == NOON
    assert len(basis_entries()) == 1


def test_opt_out_mid_call_ends_the_basis(marketing) -> None:
    subject = contact(marketing, 1, **CONSENT)
    call = CallFactory(campaign=marketing, contact=subject, to_number=subject.phone)

    opt_out(call=call, how="dtmf 9")

    subject.refresh_from_db()
    assert subject.basis_withdrawn_at is not None
    assert ReasonCode.BASIS_WITHDRAWN in verdict_codes(subject, timezone.now())


def test_add_and_update_contact_audit_each_basis_change(marketing) -> None:
    subject, created = add_contact(campaign=marketing, phone="+34910000001", basis=CONSENT)
    assert created
    # merging the same basis again changes nothing
    add_contact(campaign=marketing, phone="+34910000001", basis=CONSENT)
    update_contact(contact=subject, variables={"first_name": "Eva"})
    update_contact(contact=subject, basis_expires_at=NOON, via="api")

    entries = basis_entries()
    assert [entry.details["new"]["legal_basis"] for entry in entries] == ["consent", "consent"]
    assert entries[0].details["old"]["legal_basis"] == ""
    assert entries[1].details["new"]["expires_at"] == NOON.isoformat()


def test_a_new_basis_keeps_a_withdrawal_unless_obtained_after_it(marketing) -> None:
    subject, _ = add_contact(campaign=marketing, phone="+34910000001", basis=CONSENT)
    opt_out_contact(contact=subject, reason="no", now=NOON)

    add_contact(campaign=marketing, phone="+34910000001", basis=CONSENT)
    subject.refresh_from_db()
    assert subject.basis_withdrawn_at == NOON

    fresh = {**CONSENT, "basis_obtained_at": NOON + datetime.timedelta(days=1)}
    add_contact(campaign=marketing, phone="+34910000001", basis=fresh)
    subject.refresh_from_db()
    assert subject.basis_withdrawn_at is None


def test_campaign_purpose_defaults_to_service_and_is_checked(partner) -> None:
    campaign = CampaignFactory(partner=partner, name="X")
    assert campaign.purpose == "service"
    campaign.purpose = "spam"
    with pytest.raises(ValidationError) as error:
        campaign.full_clean()
    assert "purpose" in error.value.message_dict


# --- Admin -----------------------------------------------------------------------------------


def test_admin_contact_page_shows_the_basis_and_why_not_and_audits_a_change(
    admin_client, marketing
) -> None:
    from django.urls import reverse

    subject = contact(marketing, 1)
    url = reverse("admin:campaigns_contact_change", args=[subject.pk])

    page = admin_client.get(url).content.decode()
    assert 'name="legal_basis"' in page
    assert 'data-code="no_legal_basis"' in page

    response = admin_client.post(
        url,
        {
            "campaign": marketing.pk,
            "phone": subject.phone,
            "time_zone": subject.time_zone,
            "external_id": "",
            "variables": '{"first_name": "Ana"}',
            "state": subject.state,
            "state_reason": "",
            "legal_basis": "consent",
            "basis_source": "web",
            "basis_obtained_at_0": "2026-01-10",
            "basis_obtained_at_1": "10:00:00",
            "basis_wording": "Acepto",
            "basis_scope": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    subject.refresh_from_db()
    assert subject.legal_basis == "consent"
    (entry,) = basis_entries()
    assert (entry.actor_type, entry.details["via"]) == ("staff", "admin")
    assert verdict_codes(subject) == []
    # and the list filters by basis kind
    listed = admin_client.get(
        reverse("admin:campaigns_contact_changelist") + "?legal_basis=consent"
    )
    assert listed.status_code == 200
    assert subject.phone in listed.content.decode()


def test_start_problems_of_a_marketing_campaign_nobody_may_be_called_on(marketing) -> None:
    from campaigns.services import start_problems

    Campaign.objects.filter(pk=marketing.pk).update(state="draft")
    marketing.refresh_from_db()
    contact(marketing, 1)
    contact(marketing, 2, legal_basis="customer", basis_source="CRM")

    with translation.override("en"):
        problems = start_problems(campaign=marketing)

    assert (
        "None of the 2 contacts waiting can be called: 2 have no valid legal basis for a "
        "marketing call."
    ) in problems
