"""The staff console (Django admin) for partners, campaigns, contacts, the do-not-call lists,
imports and webhooks: one module per admin, as django.contrib.admin splits its own.
Importing them registers the admins in this order, the order of the old single module."""

# isort: off
from campaigns.admin.partners import PartnerAdmin as PartnerAdmin
from campaigns.admin.partners import PartnerApiKeyAdmin as PartnerApiKeyAdmin
from campaigns.admin.partners import PartnerMemberInline as PartnerMemberInline
from campaigns.admin.controls import CAMPAIGN_CONTROLS as CAMPAIGN_CONTROLS
from campaigns.admin.controls import CampaignControl as CampaignControl
from campaigns.admin.campaigns import CampaignAdmin as CampaignAdmin
from campaigns.admin.contacts import ContactAdmin as ContactAdmin
from campaigns.admin.donotcall import DoNotCallAdmin as DoNotCallAdmin
from campaigns.admin.imports import FINISHED_IMPORT_STATES as FINISHED_IMPORT_STATES
from campaigns.admin.imports import IMPORT_REPORT_FIELDS as IMPORT_REPORT_FIELDS
from campaigns.admin.imports import IMPORT_ROWS_SHOWN as IMPORT_ROWS_SHOWN
from campaigns.admin.imports import ContactImportAdmin as ContactImportAdmin
from campaigns.admin.imports import import_progress as import_progress
from campaigns.admin.suppression import SuppressionCopyAdmin as SuppressionCopyAdmin
from campaigns.admin.suppression import SuppressionListAdmin as SuppressionListAdmin
from campaigns.admin.webhooks import WebhookDeliveryAdmin as WebhookDeliveryAdmin
from campaigns.admin.webhooks import WebhookEndpointAdmin as WebhookEndpointAdmin
# isort: on
