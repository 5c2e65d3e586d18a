"""The staff console's contact pages: the list, its search and export, and call history."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from audit.admin_log import AuditedAdminMixin
from callcenter.exports import ExportAdminMixin, Table
from campaigns.admin.phones import _phone_in, _phone_part
from campaigns.eligibility import Eligibility, eligibility_for
from campaigns.exports import contact_table
from campaigns.models import Campaign, Contact, Partner
from campaigns.phones import time_zones_for
from campaigns.services.contacts import record_basis_change

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec


@admin.register(Contact)
class ContactAdmin(AuditedAdminMixin, ExportAdminMixin, admin.ModelAdmin):
    list_display = [
        "phone",
        "campaign",
        "partner",
        "state",
        "attempts",
        "next_attempt_at",
        "external_id",
    ]
    list_filter = ["state", "legal_basis", "campaign__partner"]
    list_select_related = ["campaign__partner"]
    search_fields = ["phone", "external_id"]
    actions = ["sandbox_call_back"]
    # Calls shown on a contact's page (the rest are a link away).
    HISTORY_CALLS = 20
    # Sandbox calls back queued at once: each holds a worker process while it plays.
    SANDBOX_CALLS_BACK = 20
    search_help_text = _("A phone number in any format, or an external id.")
    # Millions of contacts: a filtered page does not count the whole table as well.
    show_full_result_count = False
    autocomplete_fields = ["campaign"]
    export_subject = "contacts"
    readonly_fields = [
        "attempts",
        "dialable_now",
        "next_possible_call",
        "call_history",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["campaign", "phone", "time_zone", "external_id", "variables"]}),
        (
            _("Legal basis"),
            {
                "fields": [
                    "legal_basis",
                    "basis_source",
                    ("basis_obtained_at", "basis_expires_at"),
                    "basis_wording",
                    "basis_scope",
                    "basis_withdrawn_at",
                ],
                "description": _(
                    "What a marketing campaign checks before calling: consent (with when, "
                    "where and in which words it was given) or a basis its compliance profile "
                    "accepts. Each change is recorded in the audit trail."
                ),
            },
        ),
        (_("Calls"), {"fields": ["state", "state_reason", "attempts", "next_attempt_at"]}),
        (_("Calling now"), {"fields": ["dialable_now", "next_possible_call"]}),
        (_("Call history"), {"fields": ["call_history"]}),
        (_("History"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Contact | None = None) -> _FieldsetSpec:
        # Whether a contact may be called is a question about a saved contact.
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return [
                fieldset
                for fieldset in fieldsets
                if not {"dialable_now", "call_history"} & set(fieldset[1]["fields"])
            ]
        return fieldsets

    def save_model(self, request: HttpRequest, obj: Contact, form: Any, change: bool) -> None:
        # A change of legal basis is audited in the transaction that saves it (the admin's
        # change view runs in one), with the staff user and address.
        before = Contact.objects.get(pk=obj.pk).basis_snapshot() if change else None
        super().save_model(request, obj, form, change)
        record_basis_change(
            contact=obj, before=before, actor=audit.Actor.from_request(request), via="admin"
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Contact], search_term: str
    ) -> tuple[QuerySet[Contact], bool]:
        # Phones are kept in E.164 but typed as people write them ("612 345 678", "0034
        # 612…"): a term that reads as a whole number in a campaign's region finds that
        # number among the campaign's contacts (and not every number with those digits).
        term = search_term.strip()
        numbers = Q()
        if term:
            regions = Campaign.objects.order_by().values_list("phone_region", flat=True)
            for region in sorted({settings.DEFAULT_PHONE_REGION, *regions.distinct()}):
                number = _phone_in(term, region)
                if number is not None:
                    numbers |= Q(campaign__phone_region=region, phone=number)
        if numbers:
            return queryset.filter(numbers | Q(external_id=term)), False
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        part = _phone_part(term)
        return (found | queryset.filter(part) if part else found), may_have_duplicates

    def export_table(
        self, request: HttpRequest, queryset: QuerySet[Contact], *, transcript: bool
    ) -> Table:
        return contact_table(contacts=queryset, with_partner=True)

    @admin.display(description=_("partner"), ordering="campaign__partner__name")
    def partner(self, contact: Contact) -> Partner:
        return contact.campaign.partner

    def _eligibility(self, contact: Contact) -> Eligibility:
        # The page shows one verdict in two fields: work it out once.
        # (cached on the contact shown, an attribute the model does not declare)
        if getattr(contact, "_shown_eligibility", None) is None:
            try:
                contact._shown_eligibility = eligibility_for(contact=contact)  # type: ignore[attr-defined]
            except (ValueError, ZoneInfoNotFoundError):
                # A form sent back with a time zone that is not one: the verdict is the
                # saved contact's.
                saved = Contact.objects.select_related("campaign").get(pk=contact.pk)
                contact._shown_eligibility = eligibility_for(contact=saved)  # type: ignore[attr-defined]
        return contact._shown_eligibility  # type: ignore[attr-defined]

    @admin.display(description=_("may be called now"))
    def dialable_now(self, contact: Contact) -> str:
        eligibility = self._eligibility(contact)
        if eligibility.dialable:
            return format_html(
                '<span id="contact-dialable">{}</span>',
                gettext("Yes: nothing stands in the way of calling now."),
            )
        return format_html(
            '<span id="contact-dialable">{}</span><ul id="contact-reasons">{}</ul>',
            gettext("No, because:"),
            format_html_join(
                "",
                '<li data-code="{}">{}</li>',
                ((reason.code, reason.message) for reason in eligibility.reasons),
            ),
        )

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Only a carrier that rings our numbers itself (the sandbox) can make a contact ring us.
        from calls import telephony  # calls builds on campaigns: imported when needed

        actions = super().get_actions(request)
        if not telephony.backend().rings_our_numbers:
            actions.pop("sandbox_call_back", None)
        return actions

    @admin.action(
        description=_("Sandbox: the selected contacts ring their campaign's number back"),
        permissions=["change"],
    )
    def sandbox_call_back(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        # calls builds on campaigns (dependencies run one way), so the import waits until here.
        from calls import telephony

        contacts = list(queryset.select_related("campaign")[: self.SANDBOX_CALLS_BACK + 1])
        placed = 0
        for contact in contacts[: self.SANDBOX_CALLS_BACK]:
            try:
                telephony.backend().ring_back(contact=contact)
            except ValueError as error:
                self.message_user(request, f"{contact.phone}: {error}", messages.ERROR)
            else:
                placed += 1
        if placed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d sandbox call to our number queued: it plays through the "
                    "inbound webhooks and appears in the contact's calls.",
                    "%(count)d sandbox calls to our numbers queued: each plays through the "
                    "inbound webhooks and appears in its contact's calls.",
                    placed,
                )
                % {"count": placed},
                messages.SUCCESS,
            )
        if len(contacts) > self.SANDBOX_CALLS_BACK:
            self.message_user(
                request,
                gettext("Only the first %(count)d contacts call back at once.")
                % {"count": self.SANDBOX_CALLS_BACK},
                messages.WARNING,
            )

    @admin.display(description=_("calls"))
    def call_history(self, contact: Contact) -> str:
        """The contact's last calls, ours and theirs (inbound) alike, newest first."""
        calls = list(contact.calls.order_by("-created_at", "-pk")[: self.HISTORY_CALLS + 1])
        if not calls:
            return gettext("None yet.")
        rows = format_html_join(
            "",
            '<tr data-direction="{}"><td><a href="{}">{}</a></td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    call.direction,
                    reverse("admin:calls_call_change", args=[call.pk]),
                    _local_time(call.created_at, timezone.get_current_timezone_name()),
                    call.get_direction_display(),
                    call.attempt or "-",
                    call.get_status_display(),
                    call.duration_seconds if call.duration_seconds is not None else "-",
                )
                for call in calls[: self.HISTORY_CALLS]
            ),
        )
        every = ""
        if len(calls) > self.HISTORY_CALLS:
            every = format_html(
                '<p><a href="{}?contact__id__exact={}">{}</a></p>',
                reverse("admin:calls_call_changelist"),
                contact.pk,
                gettext("All of this contact's calls"),
            )
        return format_html(
            '<table id="contact-calls"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th></tr></thead><tbody>{}</tbody></table>{}",
            gettext("Created"),
            gettext("Direction"),
            gettext("Attempt"),
            gettext("Status"),
            gettext("Duration (s)"),
            rows,
            every,
        )

    @admin.display(description=_("next possible call"))
    def next_possible_call(self, contact: Contact) -> str:
        eligibility = self._eligibility(contact)
        if eligibility.dialable:
            return gettext("Now")
        moment = eligibility.next_possible_at
        if moment is None:
            return gettext("Not with time alone: a reason above must be dealt with first.")
        # In the contact's own zone (each, when its number may ring in several), where the
        # calling windows apply; then in the console's.
        zones = [contact.time_zone] if contact.time_zone else list(time_zones_for(contact.phone))
        if timezone.get_current_timezone_name() not in zones:
            zones.append(timezone.get_current_timezone_name())
        times = [(_local_time(moment, zone), zone) for zone in zones]
        return format_html(
            '<ul id="contact-next-call">{}</ul>',
            format_html_join("", "<li>{} ({})</li>", times),
        )


def _local_time(moment: datetime.datetime, zone: str) -> str:
    try:
        local = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        # A form sent back with a zone that is not one shows the contact as typed.
        return "-"
    return moment.astimezone(local).strftime("%Y-%m-%d %H:%M %Z")
