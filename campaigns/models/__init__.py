"""Partners (tenants), their campaigns and contacts, the do-not-call lists, imports and
webhooks: one module per sub-domain, every public name re-exported here (the app's models
are found through these imports; migrations name validators and defaults by this path)."""

from campaigns.models.campaigns import RETRY_OUTCOMES as RETRY_OUTCOMES
from campaigns.models.campaigns import Campaign as Campaign
from campaigns.models.campaigns import CampaignQuerySet as CampaignQuerySet
from campaigns.models.campaigns import CampaignState as CampaignState
from campaigns.models.campaigns import ConversationTransport as ConversationTransport
from campaigns.models.campaigns import MachineAction as MachineAction
from campaigns.models.campaigns import SandboxPersona as SandboxPersona
from campaigns.models.campaigns import default_retry_policy as default_retry_policy
from campaigns.models.campaigns import default_sandbox_personas as default_sandbox_personas
from campaigns.models.campaigns import retry_policy_problems as retry_policy_problems
from campaigns.models.campaigns import sandbox_personas_problems as sandbox_personas_problems
from campaigns.models.contacts import Contact as Contact
from campaigns.models.contacts import ContactQuerySet as ContactQuerySet
from campaigns.models.contacts import ContactState as ContactState
from campaigns.models.contacts import lacks_variable as lacks_variable
from campaigns.models.contacts import validate_time_zone as validate_time_zone
from campaigns.models.donotcall import DoNotCall as DoNotCall
from campaigns.models.donotcall import DoNotCallQuerySet as DoNotCallQuerySet
from campaigns.models.donotcall import DoNotCallSource as DoNotCallSource
from campaigns.models.erased import ERASED_NUMBER_MESSAGE as ERASED_NUMBER_MESSAGE
from campaigns.models.erased import ErasedNumber as ErasedNumber
from campaigns.models.erased import ErasedNumberQuerySet as ErasedNumberQuerySet
from campaigns.models.idempotency import IdempotencyKey as IdempotencyKey
from campaigns.models.imports import ContactImport as ContactImport
from campaigns.models.imports import ContactImportError as ContactImportError
from campaigns.models.imports import ContactImportState as ContactImportState
from campaigns.models.imports import ContactImportWarning as ContactImportWarning
from campaigns.models.imports import ImportRowNote as ImportRowNote
from campaigns.models.partners import ComplianceProfile as ComplianceProfile
from campaigns.models.partners import Partner as Partner
from campaigns.models.partners import PartnerApiKey as PartnerApiKey
from campaigns.models.partners import PartnerMember as PartnerMember
from campaigns.models.partners import TokenVersion as TokenVersion
from campaigns.models.partners import default_compliance_profiles as default_compliance_profiles
from campaigns.models.partners import validate_compliance_profiles as validate_compliance_profiles
from campaigns.models.partners import validate_phone_list as validate_phone_list
from campaigns.models.webhooks import WebhookDelivery as WebhookDelivery
from campaigns.models.webhooks import WebhookDeliveryQuerySet as WebhookDeliveryQuerySet
from campaigns.models.webhooks import WebhookDeliveryState as WebhookDeliveryState
from campaigns.models.webhooks import WebhookEndpoint as WebhookEndpoint
from campaigns.models.webhooks import WebhookEndpointQuerySet as WebhookEndpointQuerySet
from campaigns.models.webhooks import WebhookEvent as WebhookEvent
from campaigns.models.webhooks import validate_webhook_events as validate_webhook_events
from campaigns.models.webhooks import webhook_secret as webhook_secret
