from __future__ import annotations

import csv
import datetime
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import FloatField, Q, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, re_path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import APIKey

from callcenter.exports import ExportAdminMixin, Table
from campaigns import deliveries, imports, limits, services
from campaigns.eligibility import Eligibility, eligibility_for
from campaigns.exports import contact_table
from campaigns.forms import (
    ContactImportForm,
    DoNotCallBulkForm,
    DoNotCallForm,
    PartnerForm,
    WebhookEndpointForm,
)
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    DoNotCall,
    Partner,
    PartnerApiKey,
    PartnerMember,
    WebhookDelivery,
    WebhookEndpoint,
)
from campaigns.phones import PHONE_INPUT_MAX_LENGTH, normalize_phone, time_zones_for
from campaigns.reports import campaign_dashboard, percent, progress_label, with_progress
from voices.services import default_voice_problem

# The library's own key model is not used: partners' keys are PartnerApiKey.
admin.site.unregister(APIKey)


class PartnerMemberInline(admin.TabularInline):
    model = PartnerMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    form = PartnerForm
    list_display = [
        "name",
        "is_active",
        "max_concurrent_calls_cap",
        "calls_per_second_cap",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [PartnerMemberInline]
    fieldsets = [
        (None, {"fields": ["name", "is_active"]}),
        (
            _("Telephony limits"),
            {
                "fields": [
                    "caller_numbers",
                    "transfer_numbers",
                    "compliance_profiles",
                    ("max_concurrent_calls_cap", "calls_per_second_cap", "max_attempts_cap"),
                ],
                "description": _(
                    "What this partner's campaigns may use. The API and this console refuse "
                    "a campaign setting beyond them; the dialer clamps the pacing of "
                    "campaigns saved before a cap was lowered, and pauses those whose "
                    "numbers or profile are no longer allowed."
                ),
            },
        ),
        (_("History"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]


@admin.register(PartnerApiKey)
class PartnerApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "partner",
        "can_manage_access",
        "created",
        "last_used_at",
        "expiry_date",
        "revoked",
    ]
    list_filter = ["revoked", "can_manage_access", "partner"]
    list_select_related = ["partner"]
    search_fields = ["prefix", "name", "partner__name"]
    autocomplete_fields = ["partner"]
    fields = [
        "partner",
        "name",
        "can_manage_access",
        "expiry_date",
        "revoked",
        "prefix",
        "created_by_key",
        "created",
        "last_used_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A key never moves to another partner, and a revoked key stays revoked.
        fixed = ["prefix", "created_by_key", "created", "last_used_at"]
        if obj is None:
            return [*fixed, "revoked"]
        if obj.revoked:
            return [*fixed, "partner", "name", "can_manage_access", "expiry_date", "revoked"]
        return [*fixed, "partner"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # New keys come from the service, and are shown this once; a revocation goes
        # through it too, to revoke the keys this one made.
        if change:
            super().save_model(request, obj, form, change)
            if "revoked" in form.changed_data and obj.revoked:
                services.revoke_api_key(api_key=obj)
            return
        created, key = services.create_api_key(
            partner=obj.partner,
            name=obj.name,
            expiry_date=obj.expiry_date,
            can_manage_access=obj.can_manage_access,
        )
        obj.pk = created.pk
        messages.warning(
            request,
            gettext("The API key “%(name)s” is %(key)s — copy it now: it will not be shown again.")
            % {"name": created.name, "key": key},
        )


@dataclass(frozen=True)
class CampaignControl:
    """A move staff make on a campaign from the console, through its service: the button
    that offers it, when, and what staff are told after it (or why it was refused)."""

    name: str
    button: str
    applies: Callable[[Campaign], bool]
    service: Callable[..., Campaign]
    done: Callable[[Campaign], str]
    refused: str
    # What staff should know after the move, though it was made.
    warnings: Callable[..., list[str]] = lambda *, campaign: []


def _started(campaign: Campaign) -> str:
    if campaign.state == Campaign.State.SCHEDULED:
        return gettext("“%(name)s” is scheduled: it starts calling at %(start)s.") % {
            "name": campaign.name,
            "start": date_format(timezone.localtime(campaign.starts_at), "DATETIME_FORMAT"),
        }
    return gettext("“%(name)s” started: it is calling.") % {"name": campaign.name}


CAMPAIGN_CONTROLS = {
    control.name: control
    for control in [
        CampaignControl(
            name="start",
            button=_("Start campaign"),
            applies=lambda campaign: campaign.state == Campaign.State.DRAFT,
            service=services.start_campaign,
            done=_started,
            refused=_("“%(name)s” cannot start:"),
            warnings=services.start_warnings,
        ),
        CampaignControl(
            name="pause",
            button=_("Pause campaign"),
            applies=lambda campaign: campaign.can_move_to(Campaign.State.PAUSED),
            service=services.pause_campaign,
            done=lambda campaign: (
                gettext("“%(name)s” is paused: calls going on finish, and no new ones are made.")
                % {"name": campaign.name}
            ),
            refused=_("“%(name)s” cannot be paused:"),
        ),
        CampaignControl(
            name="resume",
            button=_("Resume campaign"),
            applies=lambda campaign: campaign.state == Campaign.State.PAUSED,
            service=services.resume_campaign,
            done=lambda campaign: gettext("“%(name)s” is calling again.") % {"name": campaign.name},
            refused=_("“%(name)s” cannot resume:"),
            warnings=services.start_warnings,
        ),
        CampaignControl(
            name="cancel",
            button=_("Cancel campaign…"),
            applies=lambda campaign: campaign.can_move_to(Campaign.State.CANCELLED),
            service=services.cancel_campaign,
            done=lambda campaign: (
                gettext("“%(name)s” is cancelled: none of its contacts will be called again.")
                % {"name": campaign.name}
            ),
            refused=_("“%(name)s” cannot be cancelled:"),
        ),
    ]
}


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "state", "progress", "live", "answer_rate"]
    list_filter = ["state", "compliance_profile", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "partner__name"]
    autocomplete_fields = ["partner", "template", "voice"]
    actions = ["start_campaigns", "pause_campaigns", "resume_campaigns", "cancel_campaigns"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    # The state moves only through the campaign services (the lifecycle's checks).
    readonly_fields = ["state", "state_reason", "state_changed_at", "created_at", "updated_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "partner",
                    "name",
                    "state",
                    "state_reason",
                    "template",
                    "voice",
                    "caller_number",
                    "phone_region",
                    ("starts_at", "ends_at"),
                ]
            },
        ),
        (
            _("Calling rules"),
            {
                "fields": [
                    "compliance_profile",
                    "calling_windows",
                    ("frequency_cap_calls", "frequency_cap_hours"),
                    "ring_timeout_seconds",
                    "time_limit_seconds",
                    "machine_action",
                    "record_calls",
                    "transfer_number",
                ]
            },
        ),
        (_("Pacing"), {"fields": [("max_concurrent_calls", "calls_per_second")]}),
        (_("Retries"), {"fields": ["max_attempts", "retry_policy"]}),
        (
            _("Sandbox carrier"),
            {
                "fields": ["sandbox_personas"],
                "classes": ["collapse"],
                "description": _(
                    "Who answers the simulated calls when no Twilio account is set: a "
                    "contact's sandbox_persona variable, else a draw weighted by this mix."
                ),
            },
        ),
        (
            _("History"),
            {"fields": ["state_changed_at", "created_at", "updated_at"], "classes": ["collapse"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        # The list's progress, live calls and answer rate are counted by the database, in
        # the one query that lists a page of campaigns however many contacts and calls.
        return with_progress(super().get_queryset(request))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Where staff start campaigns, they learn when those without a voice of their own
        # cannot start for the default voice.
        _warn_of_default_voice(request)
        return super().changelist_view(request, extra_context)

    # --- The list -------------------------------------------------------------------------

    @admin.display(description=_("progress"), ordering="contacts_done")
    def progress(self, campaign: Campaign) -> str:
        done, total = campaign.contacts_done, campaign.contacts_total
        return format_html(
            '<progress class="campaign-progress" value="{}" max="{}" aria-label="{}"></progress>'
            ' <span class="campaign-progress-figures">{} / {}</span>',
            done,
            max(total, 1),
            progress_label(done, total),
            done,
            total,
        )

    @admin.display(description=_("live calls"), ordering="live_calls")
    def live(self, campaign: Campaign) -> int:
        return campaign.live_calls

    # A campaign without ended calls has no rate: it sorts as the lowest.
    @admin.display(
        description=_("answer rate"),
        ordering=Coalesce(
            Cast("answered_calls", FloatField()) / NullIf("ended_calls", 0), Value(-1.0)
        ),
    )
    def answer_rate(self, campaign: Campaign) -> str:
        return percent(
            campaign.answered_calls / campaign.ended_calls if campaign.ended_calls else None
        )

    # --- Start, pause, resume, cancel -----------------------------------------------------

    def has_control_permission(self, request: HttpRequest) -> bool:
        """May ``request``'s user move campaigns through their lives (operators may, who
        need not be allowed to change their settings)."""
        return request.user.has_perm(f"{self.opts.app_label}.control_campaign")

    @admin.action(description=_("Start the selected campaigns"), permissions=["control"])
    def start_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.control(request, campaign, CAMPAIGN_CONTROLS["start"])

    @admin.action(description=_("Pause the selected campaigns"), permissions=["control"])
    def pause_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.control(request, campaign, CAMPAIGN_CONTROLS["pause"])

    @admin.action(description=_("Resume the selected campaigns"), permissions=["control"])
    def resume_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.control(request, campaign, CAMPAIGN_CONTROLS["resume"])

    @admin.action(description=_("Cancel the selected campaigns…"), permissions=["control"])
    def cancel_campaigns(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponse | None:
        # Cancelling is for good: staff confirm it first, as they confirm a deletion.
        if request.POST.get("post") != "yes":
            return self.cancel_confirmation(request, list(queryset), from_list=True)
        for campaign in queryset:
            self.control(request, campaign, CAMPAIGN_CONTROLS["cancel"])
        return None

    def control(self, request: HttpRequest, campaign: Campaign, control: CampaignControl) -> bool:
        """Make ``control``'s move on ``campaign`` through its service and tell staff how it
        went: done, or refused with every reason the service gave."""
        try:
            control.service(campaign=campaign)
        except services.Refusal as refusal:
            self.message_user(
                request,
                format_html(
                    '{}<ul class="campaign-refusal">{}</ul>',
                    control.refused % {"name": campaign.name},
                    format_html_join("", "<li>{}</li>", ((reason,) for reason in refusal.reasons)),
                ),
                messages.ERROR,
            )
            return False
        self.message_user(request, control.done(campaign), messages.SUCCESS)
        for warning in control.warnings(campaign=campaign):
            self.message_user(
                request,
                gettext("“%(name)s”: %(warning)s") % {"name": campaign.name, "warning": warning},
                messages.WARNING,
            )
        return True

    def cancel_confirmation(
        self, request: HttpRequest, campaigns: list[Campaign], *, from_list: bool
    ) -> TemplateResponse:
        """The page that asks staff to confirm cancelling ``campaigns`` for good."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Cancel campaigns"),
            "subtitle": None,
            "campaigns": campaigns,
            "from_list": from_list,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "has_view_permission": True,
        }
        return TemplateResponse(
            request, "admin/campaigns/campaign/cancel_confirmation.html", context
        )

    def get_urls(self) -> list:
        # The page's buttons post to a view of their own (a change form cannot hold other
        # forms), and the page refreshes its figures from another.
        info = self.opts.app_label, self.opts.model_name
        return [
            re_path(
                r"^(?P<object_id>.+)/(?P<name>{})/$".format("|".join(CAMPAIGN_CONTROLS)),
                self.admin_site.admin_view(self.control_view),
                name="{}_{}_control".format(*info),
            ),
            path(
                "<path:object_id>/figures/",
                self.admin_site.admin_view(self.figures_view),
                name="{}_{}_figures".format(*info),
            ),
            *super().get_urls(),
        ]

    def control_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """A button of the campaign's page: start, pause, resume or cancel it (cancelling
        after a confirmation), then back to the page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (
            self.has_view_or_change_permission(request, campaign)
            and self.has_control_permission(request)
        ):
            raise PermissionDenied
        if name == "cancel" and request.POST.get("post") != "yes":
            return self.cancel_confirmation(request, [campaign], from_list=False)
        self.control(request, campaign, CAMPAIGN_CONTROLS[name])
        return HttpResponseRedirect(
            reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[campaign.pk]
            )
        )

    # --- The campaign's page --------------------------------------------------------------

    def figures_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The page's figures, charts and buttons alone: what the open page refreshes."""
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404
        if not self.has_view_or_change_permission(request, campaign):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/campaigns/campaign/dashboard.html",
            self.page_context(request, campaign),
        )

    def page_context(self, request: HttpRequest, campaign: Campaign) -> dict[str, Any]:
        """What the campaign's page shows above its settings."""
        can_control = self.has_control_permission(request)
        return {
            "campaign": campaign,
            "dashboard": campaign_dashboard(campaign=campaign),
            "controls": [
                control
                for control in CAMPAIGN_CONTROLS.values()
                if can_control and control.applies(campaign)
            ],
            "figures_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_figures", args=[campaign.pk]
            ),
        }

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> HttpResponse:
        # The live figures, charts, buttons and links are read here for the page's
        # template, above the declarative fields.
        _warn_of_default_voice(request)
        if obj is not None and request.method == "GET":
            # What the dialer does otherwise than the settings say, under the partner's
            # limits (lowered since the campaign was saved).
            for note in [*limits.dial_problems(campaign=obj), *limits.clamped_pacing(campaign=obj)]:
                messages.warning(request, note)
        if obj is not None:
            context.update(self.page_context(request, obj))
            context["import_url"] = _contact_import_url(request, obj)
            problems = services.edit_problems(campaign=obj)
            if problems:
                # Its settings are shown read-only: nothing to save, and why.
                context.update(
                    edit_problems=problems,
                    show_save=False,
                    show_save_and_continue=False,
                    show_save_and_add_another=False,
                )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Settings: changed only while a draft or paused, through the services -------------

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> list[str]:
        fixed = list(self.readonly_fields)
        if obj is None:
            return fixed
        if services.edit_problems(campaign=obj):
            return [*fixed, *(f for f in flatten_fieldsets(self.fieldsets) if f not in fixed)]
        return [*fixed, "partner"]  # a campaign never moves to another partner

    def formfield_for_dbfield(
        self, db_field: models.Field, request: HttpRequest, **kwargs: Any
    ) -> Any:
        # The campaign's numbers are typed as people write them ("910 00 00 00"), longer
        # than the E.164 they are kept in.
        if db_field.name in services.CAMPAIGN_PHONE_FIELDS:
            kwargs["max_length"] = PHONE_INPUT_MAX_LENGTH
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_form(self, request: HttpRequest, obj: Campaign | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)

        class CampaignForm(form):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                cleaned = super().clean()
                # In E.164 before the model checks them, as the services keep them.
                region = cleaned.get("phone_region") or self.instance.phone_region
                for name in services.CAMPAIGN_PHONE_FIELDS:
                    if cleaned.get(name):
                        try:
                            cleaned[name] = services.normalize_campaign_phone(
                                value=cleaned[name], region=region
                            )
                        except ValidationError as exc:
                            self.add_error(name, exc)
                # The campaign may have started since the page was opened.
                if self.instance.pk is not None:
                    current = Campaign.objects.get(pk=self.instance.pk)
                    for problem in services.edit_problems(campaign=current):
                        self.add_error(None, problem)
                self._check_limits(cleaned)
                return cleaned

            def _check_limits(self, cleaned: dict[str, Any]) -> None:
                # Staff are held to the partner's limits too, as the services hold the
                # API: to go beyond them, they raise them on the partner's page first.
                partner = cleaned.get("partner") or getattr(self.instance, "partner", None)
                if partner is None:
                    return
                names = (
                    limits.LIMITED_FIELDS
                    if self.instance.pk is None
                    else [name for name in self.changed_data if name in limits.LIMITED_FIELDS]
                )
                beyond = limits.limit_errors(
                    partner=partner,
                    values={
                        name: cleaned[name]
                        for name in names
                        if name in cleaned and name not in self.errors
                    },
                )
                for name, problems in beyond.items():
                    self.add_error(name, problems)

        return CampaignForm

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # The service locks the row and checks the state again, as the API does.
        services.update_campaign(
            campaign=obj, **{name: form.cleaned_data[name] for name in form.changed_data}
        )

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        # A campaign that ran is cancelled instead, and keeps its history.
        if obj is not None and obj.state != Campaign.State.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # drafts are deleted one by one, from their page
        return actions

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        services.delete_campaign(campaign=obj)


def _warn_of_default_voice(request: HttpRequest) -> None:
    """Warn staff (once a page, not on a form's failed post) when the default voice does
    not resolve."""
    if request.method == "GET" and (problem := default_voice_problem()):
        messages.warning(request, problem)


def _contact_import_url(request: HttpRequest, campaign: Campaign) -> str:
    """Where staff import contacts into ``campaign``; empty when they may not."""
    if not request.user.has_perm("campaigns.add_contactimport"):
        return ""
    try:
        return reverse("admin:campaigns_contactimport_add") + f"?campaign={campaign.pk}"
    except NoReverseMatch:  # the import pages are not registered in this admin
        return ""


@admin.register(Contact)
class ContactAdmin(ExportAdminMixin, admin.ModelAdmin):
    list_display = [
        "phone",
        "campaign",
        "partner",
        "state",
        "attempts",
        "next_attempt_at",
        "external_id",
    ]
    list_filter = ["state", "campaign__partner"]
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
        (_("Calls"), {"fields": ["state", "state_reason", "attempts", "next_attempt_at"]}),
        (_("Calling now"), {"fields": ["dialable_now", "next_possible_call"]}),
        (_("Call history"), {"fields": ["call_history"]}),
        (_("History"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Contact | None = None) -> list:
        # Whether a contact may be called is a question about a saved contact.
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return [
                fieldset
                for fieldset in fieldsets
                if not {"dialable_now", "call_history"} & set(fieldset[1]["fields"])
            ]
        return fieldsets

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
        if getattr(contact, "_shown_eligibility", None) is None:
            try:
                contact._shown_eligibility = eligibility_for(contact=contact)
            except (ValueError, ZoneInfoNotFoundError):
                # A form sent back with a time zone that is not one: the verdict is the
                # saved contact's.
                saved = Contact.objects.select_related("campaign").get(pk=contact.pk)
                contact._shown_eligibility = eligibility_for(contact=saved)
        return contact._shown_eligibility

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
        # Only the sandbox carrier can make a contact ring us.
        actions = super().get_actions(request)
        if settings.TELEPHONY_BACKEND != "sandbox":
            actions.pop("sandbox_call_back", None)
        return actions

    @admin.action(
        description=_("Sandbox: the selected contacts ring their campaign's number back"),
        permissions=["change"],
    )
    def sandbox_call_back(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        # calls builds on campaigns (dependencies run one way), so the import waits until here.
        from calls import sandbox

        contacts = list(queryset.select_related("campaign")[: self.SANDBOX_CALLS_BACK + 1])
        placed = 0
        for contact in contacts[: self.SANDBOX_CALLS_BACK]:
            try:
                sandbox.call_back(contact=contact)
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


@admin.register(DoNotCall)
class DoNotCallAdmin(admin.ModelAdmin):
    form = DoNotCallForm
    list_display = ["phone", "scope", "source", "origin", "reason", "created_by", "created_at"]
    list_filter = ["source", ("partner", admin.EmptyFieldListFilter), "partner"]
    list_select_related = ["partner", "created_by"]
    search_fields = ["phone", "reason"]
    search_help_text = _("A phone number in any format, or words of the reason.")
    show_full_result_count = False
    autocomplete_fields = ["partner"]
    # Where an entry came from is what it records: staff add entries as staff.
    readonly_fields = ["source", "origin", "created_by", "created_at"]
    change_list_template = "admin/campaigns/donotcall/change_list.html"

    @admin.display(description=_("scope"), ordering="partner__name")
    def scope(self, obj: DoNotCall) -> str:
        if obj.partner is None:
            return _("Global")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:campaigns_partner_change", args=[obj.partner_id]),
            obj.partner.name,
        )

    @admin.display(description=_("origin"))
    def origin(self, obj: DoNotCall) -> str:
        call_id = _opt_out_call_id(obj)
        if call_id is not None:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:calls_call_change", args=[call_id]),
                gettext("Call %(id)s") % {"id": call_id},
            )
        if obj.source == DoNotCall.Source.PARTNER_API and obj.partner is not None:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:campaigns_partner_change", args=[obj.partner_id]),
                gettext("API of %(partner)s") % {"partner": obj.partner.name},
            )
        if obj.created_by is not None:
            return str(obj.created_by)
        return "-"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DoNotCall], search_term: str
    ) -> tuple[QuerySet[DoNotCall], bool]:
        # As the contacts': a number typed in any format finds its E.164 entries.
        number = _phone_in(search_term, settings.DEFAULT_PHONE_REGION)
        if number is not None:
            return queryset.filter(phone=number), False
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        part = _phone_part(search_term)
        return (found | queryset.filter(part) if part else found), may_have_duplicates

    def save_model(self, request: HttpRequest, obj: DoNotCall, form: Any, change: bool) -> None:
        # New entries go through the service, recorded as staff's.
        if change:
            super().save_model(request, obj, form, change)
            return
        entry, _created = services.add_do_not_call(
            phone=obj.phone,
            partner=obj.partner,
            source=DoNotCall.Source.STAFF,
            reason=obj.reason,
            by=request.user,
        )
        obj.pk = entry.pk

    def get_urls(self) -> list:
        # Adding a list of numbers is a page of its own beside the add form.
        bulk = path(
            "bulk-add/",
            self.admin_site.admin_view(self.bulk_add_view),
            name="campaigns_donotcall_bulk_add",
        )
        return [bulk, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        # The list's button to the bulk page, for staff who may add entries.
        extra_context = {
            **(extra_context or {}),
            "can_bulk_add": self.has_add_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def bulk_add_view(self, request: HttpRequest) -> HttpResponse:
        """Numbers pasted or uploaded onto the global list or a partner's, as staff; the
        page reports how many were added or already listed, and every unreadable line."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        addition = None
        if request.method == "POST":
            form = DoNotCallBulkForm(request.POST, request.FILES)
            if form.is_valid():
                addition = form.add_numbers(by=request.user)
                self.message_user(
                    request,
                    gettext(
                        "Added: %(created)d. Already on the list: %(existing)d. Lines not "
                        "read: %(invalid)d."
                    )
                    % {
                        "created": addition.created,
                        "existing": addition.existing,
                        "invalid": len(addition.invalid),
                    },
                    messages.WARNING if addition.invalid else messages.SUCCESS,
                )
                # A fresh box for the next list, onto the same list.
                form = DoNotCallBulkForm(
                    initial={
                        name: form.cleaned_data[name]
                        for name in ("scope", "partner", "reason", "region")
                    }
                )
        else:
            form = DoNotCallBulkForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Add numbers to the do-not-call list"),
            "subtitle": None,
            "form": form,
            "addition": addition,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/campaigns/donotcall/bulk_add.html", context)


# The state, counts and failure are shown by the page's progress section.
IMPORT_REPORT_FIELDS = [
    "campaign",
    "file_name",
    "created_by",
    "created_at",
    "started_at",
    "finished_at",
]
# Rejected rows listed on an import's page; the downloadable report has all of them.
IMPORT_ROWS_SHOWN = 500
FINISHED_IMPORT_STATES = frozenset({ContactImport.State.DONE, ContactImport.State.FAILED})


@admin.register(ContactImport)
class ContactImportAdmin(admin.ModelAdmin):
    form = ContactImportForm
    list_display = [
        "file_name",
        "campaign",
        "state",
        "processed_rows",
        "created_count",
        "merged_count",
        "error_count",
        "flagged_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "campaign__partner"]
    list_select_related = ["campaign", "created_by"]
    search_fields = ["file_name", "campaign__name"]
    autocomplete_fields = ["campaign"]
    # An import is made by the import service and then only looked at.
    actions = None
    change_form_template = "admin/campaigns/contactimport/change_form.html"

    def get_fields(self, request: HttpRequest, obj: ContactImport | None = None) -> list[str]:
        return ["campaign", "upload"] if obj is None else IMPORT_REPORT_FIELDS

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # The campaign page links here with ?campaign=<pk>; a value that is no key (a URL
        # typed by hand) would break the campaign chooser.
        initial = super().get_changeform_initial_data(request)
        if not str(initial.get("campaign", "")).isdigit():
            initial.pop("campaign", None)
        return initial

    def get_readonly_fields(
        self, request: HttpRequest, obj: ContactImport | None = None
    ) -> list[str]:
        return [] if obj is None else IMPORT_REPORT_FIELDS

    def has_change_permission(self, request: HttpRequest, obj: ContactImport | None = None) -> bool:
        return False  # its page is a report: nothing on it is edited by hand

    def has_delete_permission(self, request: HttpRequest, obj: ContactImport | None = None) -> bool:
        # An import being run still writes its report.
        if obj is not None and obj.state not in FINISHED_IMPORT_STATES:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ContactImport, form: Any, change: bool) -> None:
        # The import service stores the file and imports it: a small file right after
        # the commit, before the page answers (as the API imports one during the
        # request), a larger one in the background.
        upload = form.cleaned_data["upload"]
        contact_import = imports.create_import(
            campaign=obj.campaign,
            file=upload,
            by=request.user,
            run_now=upload.size <= settings.CONTACT_IMPORT_SYNC_MAX_BYTES,
        )
        obj.pk = contact_import.pk
        obj.file_name = contact_import.file_name

    def response_add(
        self, request: HttpRequest, obj: ContactImport, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The import's page is its report, whichever button was pressed.
        self.message_user(
            request,
            gettext("“%(file)s” was uploaded into %(campaign)s: how its import goes is below.")
            % {"file": obj.file_name, "campaign": obj.campaign.name},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:campaigns_contactimport_change", args=[obj.pk]))

    def get_urls(self) -> list:
        # The report's progress (polled by its page) and its rejected rows as a file.
        urls = [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="campaigns_contactimport_progress",
            ),
            path(
                "<path:object_id>/rejected-rows/",
                self.admin_site.admin_view(self.rejected_rows_view),
                name="campaigns_contactimport_rejected_rows",
            ),
        ]
        return [*urls, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ContactImport | None = None,
    ) -> HttpResponse:
        # Below the fields: the progress, followed while the import runs, and the rejected
        # rows; the add page says what the file may hold.
        if obj is None:
            context.update(
                max_size=settings.CONTACT_IMPORT_MAX_BYTES,
                show_save_and_add_another=False,
                show_save_and_continue=False,
            )
        else:
            context.update(
                progress=import_progress(obj),
                rejected_rows=list(obj.row_errors.all()[:IMPORT_ROWS_SHOWN]),
                rejected_rows_total=obj.row_errors.count(),
                rejected_rows_shown=IMPORT_ROWS_SHOWN,
                flagged_rows=list(obj.row_warnings.all()[:IMPORT_ROWS_SHOWN]),
                flagged_rows_total=obj.row_warnings.count(),
                missing_variables=sorted(obj.missing_variables.items()),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _viewable(self, request: HttpRequest, object_id: str) -> ContactImport:
        contact_import = self.get_object(request, unquote(object_id))
        if contact_import is None:
            raise Http404
        if not self.has_view_permission(request, contact_import):
            raise PermissionDenied
        return contact_import

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The import's state and counts, as JSON."""
        return JsonResponse(import_progress(self._viewable(request, object_id)))

    def rejected_rows_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every rejected row as a CSV file (UTF-8 with a byte order mark, for Excel);
        no cell can start a spreadsheet formula."""
        contact_import = self._viewable(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stem = Path(contact_import.file_name).stem or str(contact_import.pk)
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=gettext("rejected-rows-%(file)s.csv") % {"file": stem}
        )
        response.write("\ufeff")
        writer = csv.writer(response)
        writer.writerow([gettext("row"), gettext("field"), gettext("value"), gettext("message")])
        rows = contact_import.row_errors.values_list("row", "field", "value", "message")
        for row, field, value, message in rows.iterator():
            writer.writerow([row, *(_spreadsheet_safe(text) for text in (field, value, message))])
        return response


def import_progress(contact_import: ContactImport) -> dict[str, Any]:
    """What an import's page shows of its progress, and its progress view answers."""
    finished = contact_import.state in FINISHED_IMPORT_STATES
    imported = contact_import.created_count + contact_import.merged_count
    read = contact_import.processed_rows
    return {
        "state": contact_import.state,
        "state_label": str(contact_import.get_state_display()),
        "finished": finished,
        "failure_reason": contact_import.failure_reason,
        "rows_read": read,
        "total_rows": contact_import.total_rows,
        "imported": imported,
        "created": contact_import.created_count,
        "merged": contact_import.merged_count,
        "rejected": contact_import.error_count,
        "flagged": contact_import.flagged_count,
        # Shares of the rows read, for the bar (the rows to come are not counted ahead).
        "imported_percent": round(100 * imported / read, 1) if read else 0,
        "rejected_percent": round(100 * contact_import.error_count / read, 1) if read else 0,
    }


# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# calls.outcomes.opt_out writes "call <id> (<campaign>): <how>" as an opt-out's reason.
_OPT_OUT_CALL = re.compile(r"^call (\d+)\b")


def _spreadsheet_safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _opt_out_call_id(entry: DoNotCall) -> int | None:
    if entry.source != DoNotCall.Source.OPT_OUT:
        return None
    match = _OPT_OUT_CALL.match(entry.reason)
    return int(match[1]) if match else None


def _phone_in(term: str, region: str) -> str | None:
    """``term`` as an E.164 number read in ``region``; None when it is not one."""
    try:
        return normalize_phone(term, region=region)
    except ValidationError:
        return None


def _phone_part(term: str) -> Q:
    """Numbers that contain ``term``'s digits when it is written like part of a number
    ("0034 612 34" finds +3461234…); an empty Q when it is not."""
    if not term.strip() or not re.fullmatch(r"[\d\s+().\-/]+", term):
        return Q()
    digits = re.sub(r"\D", "", term)
    digits = digits.removeprefix("00") if term.strip().startswith("00") else digits
    return Q(phone__contains=digits) if len(digits) >= 3 else Q()


def _local_time(moment: datetime.datetime, zone: str) -> str:
    try:
        local = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        # A form sent back with a zone that is not one shows the contact as typed.
        return "-"
    return moment.astimezone(local).strftime("%Y-%m-%d %H:%M %Z")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "partner", "is_active", "created_at"]
    list_filter = ["is_active", "partner"]
    list_select_related = ["partner"]
    search_fields = ["url", "partner__name", "description"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["secret", "created_at", "updated_at"]
    # A URL typed without a scheme is taken as HTTPS (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["state", "event_type", "endpoint__partner"]
    list_select_related = ["endpoint__partner"]
    search_fields = ["endpoint__url"]
    search_help_text = _("An event id, or part of an endpoint's URL.")
    # One row per event and endpoint: counting them all on every page is the slow part.
    show_full_result_count = False
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields if field.name != "id"]
    actions = ["redeliver"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries come from events only

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> tuple[QuerySet[WebhookDelivery], bool]:
        # An event id is looked up as one, by its index (a search field compares the
        # UUID as upper-cased text, which reads every row).
        try:
            event_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(event_id=event_id), False

    @admin.action(description=_("Send again"), permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: Any) -> None:
        for delivery in queryset:
            deliveries.redeliver(delivery=delivery)
        messages.success(
            request,
            ngettext(
                "%(count)d delivery will be sent again.",
                "%(count)d deliveries will be sent again.",
                len(queryset),
            )
            % {"count": len(queryset)},
        )
