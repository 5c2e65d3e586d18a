"""The partner API over partners, keys, campaigns, contacts and do-not-call lists: a module
per topic, every viewset importable from here (callcenter/urls.py registers them).
"""

from __future__ import annotations

from campaigns.views.base import (
    ADDED,
    CONFLICT,
    NO_CONTENT,
    PhoneSearchFilter,
    acting_user,
    phone_errors,
    refused_as_conflict,
    scoped_campaigns,
)
from campaigns.views.campaigns import CampaignViewSet
from campaigns.views.contacts import (
    CONTACT_EXPORT_DESCRIPTION,
    ContactImportViewSet,
    ContactViewSet,
)
from campaigns.views.do_not_call import DoNotCallViewSet
from campaigns.views.partners import (
    ApiKeyScheme,
    ApiKeyViewSet,
    LogoutView,
    PartnerViewSet,
    TokenScheme,
)
from campaigns.views.webhooks import WebhookDeliveryViewSet, WebhookEndpointViewSet

__all__ = [
    "ADDED",
    "CONFLICT",
    "CONTACT_EXPORT_DESCRIPTION",
    "NO_CONTENT",
    "ApiKeyScheme",
    "ApiKeyViewSet",
    "CampaignViewSet",
    "ContactImportViewSet",
    "ContactViewSet",
    "DoNotCallViewSet",
    "LogoutView",
    "PartnerViewSet",
    "PhoneSearchFilter",
    "TokenScheme",
    "WebhookDeliveryViewSet",
    "WebhookEndpointViewSet",
    "acting_user",
    "phone_errors",
    "refused_as_conflict",
    "scoped_campaigns",
]
