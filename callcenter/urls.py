"""Project URLs: admin, API, operations endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

# The admin site's titles and project-wide registrations, before its URLs are built.
import callcenter.admin  # noqa: F401
from audit.views import AuditEntryViewSet
from callcenter.api import router
from callcenter.health import health
from callcenter.metrics import export_metrics
from calls import views as call_views
from calls.reports.views import CampaignStatsViewSet
from campaigns import views as campaign_views
from privacy.views import DataSubjectViewSet
from templates import views as template_views
from voices import views as voice_views

# The partner API's table of contents (paths are part of the contract).
router.register("partners", campaign_views.PartnerViewSet, basename="partner")
router.register("api-keys", campaign_views.ApiKeyViewSet, basename="api-key")
# A campaign's figures count calls, so calls serves them (/campaigns/{id}/stats/). First:
# the API root lists each prefix once, by its last registration.
router.register("campaigns", CampaignStatsViewSet, basename="campaign-figures")
router.register("campaigns", campaign_views.CampaignViewSet, basename="campaign")
router.register("contacts", campaign_views.ContactViewSet, basename="contact")
router.register("imports", campaign_views.ContactImportViewSet, basename="contact-import")
router.register("dnc", campaign_views.DoNotCallViewSet, basename="do-not-call")
# Before "webhooks", whose ids are numbers: "deliveries" is not an endpoint's id.
router.register(
    "webhooks/deliveries", campaign_views.WebhookDeliveryViewSet, basename="webhook-delivery"
)
router.register("webhooks", campaign_views.WebhookEndpointViewSet, basename="webhook")
router.register("calls", call_views.CallViewSet, basename="call")
router.register("templates", template_views.CallTemplateViewSet, basename="template")
router.register("voices", voice_views.VoiceViewSet, basename="voice")
router.register("audit", AuditEntryViewSet, basename="audit-entry")
router.register("data-subjects", DataSubjectViewSet, basename="data-subject")

handler404 = "callcenter.api.not_found"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("metrics", export_metrics, name="metrics"),
    path("api/v1/auth/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/v1/auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/v1/auth/logout/", campaign_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own: the
    # Content-Security-Policy (settings.py) runs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include("voices.urls")),
    path("", include("calls.urls")),
]
