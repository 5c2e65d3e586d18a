"""The partner API's view of partners, keys, campaigns, contacts, imports, the do-not-call
list and webhooks: a module per topic, every name importable from here.
"""

from __future__ import annotations

from campaigns.serializers.campaigns import CampaignMoveSerializer, CampaignSerializer
from campaigns.serializers.contacts import (
    IMPORT_ERRORS_SHOWN,
    MAX_BATCH_ITEMS,
    ContactDetailSerializer,
    ContactImportDetailSerializer,
    ContactImportErrorSerializer,
    ContactImportSerializer,
    ContactImportWarningSerializer,
    ContactInputSerializer,
    ContactSerializer,
    ContactUpdateSerializer,
    ContactUploadSerializer,
    EligibilitySerializer,
    ImportResultSerializer,
    ReasonSerializer,
    RowErrorSerializer,
)
from campaigns.serializers.do_not_call import (
    DoNotCallBatchSerializer,
    DoNotCallBulkSerializer,
    DoNotCallInputSerializer,
    DoNotCallOwnerMixin,
    DoNotCallSerializer,
    NumberErrorSerializer,
)
from campaigns.serializers.partners import (
    ApiKeySerializer,
    CreatedApiKeySerializer,
    OnboardedPartnerSerializer,
    PartnerOnboardingSerializer,
    PartnerSerializer,
)
from campaigns.serializers.webhooks import WebhookDeliverySerializer, WebhookEndpointSerializer

__all__ = [
    "IMPORT_ERRORS_SHOWN",
    "MAX_BATCH_ITEMS",
    "ApiKeySerializer",
    "CampaignMoveSerializer",
    "CampaignSerializer",
    "ContactDetailSerializer",
    "ContactImportDetailSerializer",
    "ContactImportErrorSerializer",
    "ContactImportSerializer",
    "ContactImportWarningSerializer",
    "ContactInputSerializer",
    "ContactSerializer",
    "ContactUpdateSerializer",
    "ContactUploadSerializer",
    "CreatedApiKeySerializer",
    "DoNotCallBatchSerializer",
    "DoNotCallBulkSerializer",
    "DoNotCallInputSerializer",
    "DoNotCallOwnerMixin",
    "DoNotCallSerializer",
    "EligibilitySerializer",
    "ImportResultSerializer",
    "NumberErrorSerializer",
    "OnboardedPartnerSerializer",
    "PartnerOnboardingSerializer",
    "PartnerSerializer",
    "ReasonSerializer",
    "RowErrorSerializer",
    "WebhookDeliverySerializer",
    "WebhookEndpointSerializer",
]
