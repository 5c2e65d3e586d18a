"""The staff console's campaign pages: the list, the form, the dashboard and the controls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import FloatField, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, re_path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from audit.admin_log import AuditedAdminMixin
from campaigns import limits, services
from campaigns.admin.controls import CAMPAIGN_CONTROLS, CampaignControl
from campaigns.models import Campaign
from campaigns.phones import PHONE_INPUT_MAX_LENGTH
from campaigns.reports import (
    ABANDONMENT_WINDOW_DAYS,
    Abandonment,
    campaign_abandonment,
    campaign_dashboard,
    percent,
    progress_label,
    with_abandonment,
    with_progress,
)
from voices.services import default_voice_problem

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _Progress(TypedDict):
    """What ``with_progress`` counts on each campaign of the list."""

    contacts_total: int
    contacts_done: int
    live_calls: int
    answered_calls: int
    ended_calls: int


class _Abandonment(TypedDict):
    """What ``with_abandonment`` counts on each campaign of the list."""

    abandoned_calls: int
    live_answered_calls: int


@admin.register(Campaign)
class CampaignAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "partner", "state", "progress", "live", "answer_rate", "abandonment"]
    list_filter = ["state", "compliance_profile", "purpose", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "partner__name"]
    autocomplete_fields = ["partner", "template", "voice"]
    actions = ["start_campaigns", "pause_campaigns", "resume_campaigns", "cancel_campaigns"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    # The state moves only through the campaign services (the lifecycle's checks).
    readonly_fields = [
        "state",
        "state_reason",
        "abandonment_rate",
        "state_changed_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "partner",
                    "name",
                    "state",
                    "state_reason",
                    "abandonment_rate",
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
                    ("compliance_profile", "purpose"),
                    "calling_windows",
                    ("frequency_cap_calls", "frequency_cap_hours"),
                    "ring_timeout_seconds",
                    "time_limit_seconds",
                    "machine_action",
                    "transport",
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
        # The list's progress, live calls, answer and abandonment rates are counted by the
        # database, in the one query that lists a page of campaigns however many calls.
        return with_abandonment(with_progress(super().get_queryset(request)))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Where staff start campaigns, they learn when those without a voice of their own
        # cannot start for the default voice.
        _warn_of_default_voice(request)
        return super().changelist_view(request, extra_context)

    # --- The list -------------------------------------------------------------------------

    @admin.display(description=_("progress"), ordering="contacts_done")
    def progress(self, campaign: WithAnnotations[Campaign, _Progress]) -> str:
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
    def live(self, campaign: WithAnnotations[Campaign, _Progress]) -> int:
        return campaign.live_calls

    # A campaign without ended calls has no rate: it sorts as the lowest.
    @admin.display(
        description=_("answer rate"),
        ordering=Coalesce(
            Cast("answered_calls", FloatField()) / NullIf("ended_calls", 0), Value(-1.0)
        ),
    )
    def answer_rate(self, campaign: WithAnnotations[Campaign, _Progress]) -> str:
        return percent(
            campaign.answered_calls / campaign.ended_calls if campaign.ended_calls else None
        )

    # A campaign without live-answered calls has no rate: it sorts as the lowest.
    @admin.display(
        description=_("abandoned (30 days)"),
        ordering=Coalesce(
            Cast("abandoned_calls", FloatField()) / NullIf("live_answered_calls", 0), Value(-1.0)
        ),
    )
    def abandonment(self, campaign: WithAnnotations[Campaign, _Abandonment]) -> str:
        return Abandonment(
            abandoned=campaign.abandoned_calls,
            answered=campaign.live_answered_calls,
            window_days=ABANDONMENT_WINDOW_DAYS,
        ).short_label()

    # --- The campaign's page: its abandonment rate, read-only ---

    @admin.display(description=_("abandoned calls"))
    def abandonment_rate(self, campaign: Campaign) -> str:
        return campaign_abandonment(campaign=campaign).label()

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
            control.service(campaign=campaign, actor=audit.Actor.from_request(request))
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
            # A private ModelAdmin helper, which django-stubs leaves out.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
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

    def get_form(
        self, request: HttpRequest, obj: Campaign | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)

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
