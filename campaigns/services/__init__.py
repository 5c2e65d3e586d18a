"""Writes on partners, campaigns, contacts and the do-not-call lists, one module a topic.

Every public service is re-exported here: callers write ``from campaigns.services import
start_campaign`` (or ``services.start_campaign``) whatever module it lives in.
"""

from campaigns.services.campaigns import CAMPAIGN_PHONE_FIELDS as CAMPAIGN_PHONE_FIELDS
from campaigns.services.campaigns import EDITABLE_STATES as EDITABLE_STATES
from campaigns.services.campaigns import FINAL_STATES as FINAL_STATES
from campaigns.services.campaigns import check_accepts_contacts as check_accepts_contacts
from campaigns.services.campaigns import create_campaign as create_campaign
from campaigns.services.campaigns import delete_campaign as delete_campaign
from campaigns.services.campaigns import edit_problems as edit_problems
from campaigns.services.campaigns import normalize_campaign_phone as normalize_campaign_phone
from campaigns.services.campaigns import update_campaign as update_campaign
from campaigns.services.contacts import WAITING_STATES as WAITING_STATES
from campaigns.services.contacts import PutOff as PutOff
from campaigns.services.contacts import add_contact as add_contact
from campaigns.services.contacts import delete_contact as delete_contact
from campaigns.services.contacts import finish_contact_attempt as finish_contact_attempt
from campaigns.services.contacts import mark_contacts_calling as mark_contacts_calling
from campaigns.services.contacts import opt_out_contact as opt_out_contact
from campaigns.services.contacts import put_off as put_off
from campaigns.services.contacts import put_off_contacts as put_off_contacts
from campaigns.services.contacts import release_contact as release_contact
from campaigns.services.contacts import schedule_contact_callback as schedule_contact_callback
from campaigns.services.contacts import update_contact as update_contact
from campaigns.services.do_not_call import DoNotCallBatch as DoNotCallBatch
from campaigns.services.do_not_call import NumberError as NumberError
from campaigns.services.do_not_call import add_do_not_call as add_do_not_call
from campaigns.services.do_not_call import add_do_not_call_numbers as add_do_not_call_numbers
from campaigns.services.do_not_call import remove_do_not_call as remove_do_not_call
from campaigns.services.errors import CampaignStateError as CampaignStateError
from campaigns.services.errors import ContactStateError as ContactStateError
from campaigns.services.errors import DoNotCallProtected as DoNotCallProtected
from campaigns.services.errors import Refusal as Refusal
from campaigns.services.lifecycle import advance_campaigns as advance_campaigns
from campaigns.services.lifecycle import cancel_campaign as cancel_campaign
from campaigns.services.lifecycle import complete_campaign as complete_campaign
from campaigns.services.lifecycle import nobody_called_reason as nobody_called_reason
from campaigns.services.lifecycle import pause_campaign as pause_campaign
from campaigns.services.lifecycle import resume_campaign as resume_campaign
from campaigns.services.lifecycle import start_campaign as start_campaign
from campaigns.services.lifecycle import start_problems as start_problems
from campaigns.services.lifecycle import start_warnings as start_warnings
from campaigns.services.lifecycle import template_problems as template_problems
from campaigns.services.lifecycle import transition_campaign as transition_campaign
from campaigns.services.partners import Onboarding as Onboarding
from campaigns.services.partners import create_api_key as create_api_key
from campaigns.services.partners import create_partner as create_partner
from campaigns.services.partners import end_api_tokens as end_api_tokens
from campaigns.services.partners import onboard_partner as onboard_partner
from campaigns.services.partners import revoke_api_key as revoke_api_key
