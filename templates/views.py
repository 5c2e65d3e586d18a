"""The partner API over call templates: write them, and hear them before a campaign does."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from audit.admin_log import AuditedViewSetMixin
from callcenter.api import Conflict, ScopedModelViewSet
from campaigns.models import Contact
from templates import services
from templates.models import CallTemplate
from templates.rendering import MissingVariable, TemplateRenderError
from templates.serializers import (
    CallTemplateSerializer,
    TemplatePreviewResultSerializer,
    TemplatePreviewSerializer,
)
from voices import speech
from voices.models import Voice
from voices.services import resolve_default_voice, voice_for_campaign

WRITE_DESCRIPTION = gettext_lazy(
    "Refused (400, by field) when a line could not be rendered or the template could not "
    "run. The disclosure rules are reported in `lint` and block only starting a campaign, "
    "or changing a template that a scheduled, running or paused campaign calls with."
)


@extend_schema_view(
    create=extend_schema(description=WRITE_DESCRIPTION),
    update=extend_schema(description=WRITE_DESCRIPTION),
    partial_update=extend_schema(description=WRITE_DESCRIPTION),
    destroy=extend_schema(
        description=gettext_lazy("Refused (409) while any campaign has the template."),
        responses={
            204: None,
            409: OpenApiResponse(
                {"$ref": "#/components/schemas/Error"},
                gettext_lazy("Campaigns use this template."),
            ),
        },
    ),
)
class CallTemplateViewSet(AuditedViewSetMixin, ScopedModelViewSet):
    """The partner's call templates: what its campaigns' calls say."""

    queryset = CallTemplate.objects.select_related("partner")
    serializer_class = CallTemplateSerializer
    filterset_fields = ["mode", "language"]

    def perform_create(self, serializer: BaseSerializer[CallTemplate]) -> None:
        serializer.instance = services.create_template(**serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[CallTemplate]) -> None:
        template = serializer.instance
        assert template is not None  # an update's serializer holds the object
        serializer.instance = services.update_template(
            template=template, **serializer.validated_data
        )

    def perform_destroy(self, instance: CallTemplate) -> None:
        try:
            services.delete_template(template=instance)
        except services.TemplateInUse as exc:
            raise Conflict(str(exc)) from exc

    @extend_schema(
        summary=gettext_lazy("Preview a template"),
        description=gettext_lazy(
            "Each spoken line rendered for a contact, for given variables or for the "
            "template's samples; and voiced, sentence by sentence, when speech is "
            "configured (else `audio` is null and `audio_status` says why)."
        ),
        request=TemplatePreviewSerializer,
        responses={200: TemplatePreviewResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, pk: str) -> Response:
        template = self.get_object()
        incoming = TemplatePreviewSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        incoming.is_valid(raise_exception=True)
        wanted = incoming.validated_data
        contact, variables = wanted.get("contact"), wanted.get("variables")
        if contact is not None and contact.campaign.partner_id != template.partner_id:
            # Only staff can name one: a partner's own contacts are all it can see.
            raise serializers.ValidationError(
                {"contact": _("The contact belongs to another partner than the template.")}
            )
        answer: dict[str, Any] = {
            "lines": _rendered(template=template, contact=contact, variables=variables),
            "audio": None,
            "audio_status": "not_requested",
            "audio_message": "",
        }
        if wanted["audio"]:
            voice = wanted.get("voice") or (
                voice_for_campaign(campaign=contact.campaign)
                if contact is not None
                else resolve_default_voice()
            )
            if not speech.is_configured():
                answer["audio_status"] = "not_configured"
                answer["audio_message"] = _(
                    "Speech is not configured (no ElevenLabs API key): the lines are text only."
                )
            elif voice is None:
                answer["audio_status"] = "no_voice"
                answer["audio_message"] = _(
                    "No voice to speak with: choose one, or sync the default voice (%(voice)s)."
                ) % {"voice": settings.ELEVENLABS_DEFAULT_VOICE}
            else:
                answer["audio_status"] = "voiced"
                answer["audio"] = _voiced(
                    template=template, voice=voice, contact=contact, variables=variables
                )
        return Response(TemplatePreviewResultSerializer(answer).data)


def _rendered(
    *, template: CallTemplate, contact: Contact | None, variables: dict[str, str] | None
) -> dict[str, str]:
    """preview_template, with its refusals as field errors of the request."""
    try:
        return services.preview_template(template=template, contact=contact, variables=variables)
    except MissingVariable as exc:
        if contact is not None:
            error = {
                "contact": _("The contact has no value for “%(name)s”, which the template speaks.")
                % {"name": exc.name}
            }
        else:
            error = {
                "variables": _("“%(name)s” has no value to speak: give one in variables.")
                % {"name": exc.name}
            }
        raise serializers.ValidationError(error) from exc
    except TemplateRenderError as exc:
        raise serializers.ValidationError(
            {problem.field: problem.message for problem in exc.problems}
        ) from exc


def _voiced(
    *,
    template: CallTemplate,
    voice: Voice,
    contact: Contact | None,
    variables: dict[str, str] | None,
) -> dict[str, list[dict[str, str]]]:
    lines = services.preview_template_audio(
        template=template, voice=voice, contact=contact, variables=variables
    )
    return {
        field: [dataclasses.asdict(sentence) for sentence in sentences]
        for field, sentences in lines.items()
    }
