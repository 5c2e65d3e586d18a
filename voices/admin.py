from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.admin_log import AuditedAdminMixin
from voices import services
from voices.models import SpeechClip, Voice
from voices.speech import SpeechNotConfigured, SpeechRejected, SpeechUnavailable


@admin.register(Voice)
class VoiceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "is_default", "language", "preview", "provider_voice_id", "updated_at"]
    list_filter = ["is_default", "language"]
    search_fields = ["name", "provider_voice_id"]
    # The default is chosen with the action, through the service that keeps it unique.
    readonly_fields = ["is_default", "preview", "created_at", "updated_at"]
    # Django 6 makes https the default scheme for bare URLs; preview URLs are https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["sync_voices", "make_default"]
    change_list_template = "admin/voices/voice/change_list.html"
    # Without a count Django shows the actions even on an empty changelist, where the
    # first sync has to start.
    show_full_result_count = False

    @admin.action(description=gettext_lazy("Sync voices from ElevenLabs"), permissions=["sync"])
    def sync_voices(self, request: HttpRequest, queryset: QuerySet[Voice]) -> None:
        """Sync the whole catalogue, whatever rows are selected."""
        try:
            result = services.sync_voices()
        except SpeechNotConfigured:
            self.message_user(
                request,
                _("ElevenLabs is not configured: set ELEVENLABS_API_KEY to sync voices."),
                messages.ERROR,
            )
        except SpeechRejected as exc:
            self.message_user(
                request,
                _("ElevenLabs refused the voice listing (HTTP %(status)s): %(message)s")
                % {"status": exc.status_code, "message": exc.provider_message},
                messages.ERROR,
            )
        except SpeechUnavailable as exc:
            self.message_user(
                request,
                _("ElevenLabs is unavailable, try again later (%(error)s).") % {"error": exc},
                messages.ERROR,
            )
        else:
            self.message_user(
                request,
                _(
                    "Voices synced from ElevenLabs: %(created)d created, %(updated)d updated, "
                    "%(unchanged)d unchanged, %(missing)d no longer listed."
                )
                % result.counts(),
                messages.SUCCESS,
            )

    @admin.action(description=gettext_lazy("Make the default voice"), permissions=["change"])
    def make_default(self, request: HttpRequest, queryset: QuerySet[Voice]) -> None:
        """The one selected voice becomes the voice of campaigns that name none."""
        voices = list(queryset[:2])
        if len(voices) != 1:
            self.message_user(
                request, _("Choose exactly one voice to make the default."), messages.ERROR
            )
            return
        services.set_default_voice(voice=voices[0])
        self.message_user(
            request,
            _("%(voice)s is now the default voice of campaigns that name none.")
            % {"voice": voices[0].name},
            messages.SUCCESS,
        )

    @admin.display(description=gettext_lazy("preview"))
    def preview(self, voice: Voice) -> str:
        # ElevenLabs hosts the sample; nothing is fetched until staff press play.
        if not voice.preview_url:
            return "-"
        return format_html(
            '<audio class="voice-preview" controls preload="none" src="{}"></audio>',
            voice.preview_url,
        )

    def has_sync_permission(self, request: HttpRequest) -> bool:
        # A sync both adds and changes voices; Django's action permissions need any one.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        # Django runs an action only on selected rows, but syncing acts on the whole
        # catalogue, which is empty before the first sync: run it with no selection too.
        if (
            request.method == "POST"
            and request.POST.get("action") == "sync_voices"
            and not request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            and "sync_voices" in self.get_actions(request)
        ):
            self.sync_voices(request, self.get_queryset(request).none())
            return HttpResponseRedirect(request.get_full_path())
        # The page's sync button and its note on which voice is the default; a default
        # that resolves to nothing is also a warning, as on the campaigns' pages.
        if request.method == "GET" and (problem := services.default_voice_problem()):
            self.message_user(request, problem, messages.WARNING)
        default = services.resolve_default_voice()
        extra_context = {
            **(extra_context or {}),
            "can_sync_voices": self.has_sync_permission(request),
            "default_voice": default,
            "default_setting": settings.ELEVENLABS_DEFAULT_VOICE,
        }
        return super().changelist_view(request, extra_context)


@admin.register(SpeechClip)
class SpeechClipAdmin(admin.ModelAdmin):
    list_display = ["text", "voice", "status", "characters", "size_bytes", "created_at"]
    list_filter = ["status", "output_format", "model_id"]
    list_select_related = ["voice"]
    search_fields = ["text", "key"]
    # Clips are rendered by the speech pipeline, never written by hand.
    readonly_fields = [*(field.name for field in SpeechClip._meta.fields), "player"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=gettext_lazy("listen"))
    def player(self, clip: SpeechClip) -> str:
        if clip.status != SpeechClip.Status.READY:
            return "—"
        return format_html(
            '<audio controls preload="none" src="{}"></audio>',
            reverse("voices:clip", kwargs={"token": clip.token}),
        )
