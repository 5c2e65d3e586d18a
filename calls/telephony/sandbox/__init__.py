"""The sandbox carrier: a simulated Twilio, so that a campaign runs on a laptop with no
credentials (TELEPHONY_BACKEND=sandbox).

`carrier` answers Twilio's REST calls and holds `SandboxBackend`; `simulation` plays a
call through our webhooks (`verbs` the TwiML, `relay` its ConversationRelay sessions over a
WebSocket, `webhooks` its signed requests), queued as
`tasks.run_sandbox_call_task`; `personas` are the simulated callees; `state` the calls in
the shared cache, their prices and the signing key; `views` serves its recordings.
"""

from __future__ import annotations

from calls.telephony.sandbox.carrier import SandboxBackend as SandboxBackend
from calls.telephony.sandbox.carrier import call_back as call_back
from calls.telephony.sandbox.carrier import create_call as create_call
from calls.telephony.sandbox.carrier import fetch_call as fetch_call
from calls.telephony.sandbox.carrier import find_calls as find_calls
from calls.telephony.sandbox.carrier import place_inbound_call as place_inbound_call
from calls.telephony.sandbox.carrier import update_call as update_call
from calls.telephony.sandbox.personas import CALLER_PERSONAS as CALLER_PERSONAS
from calls.telephony.sandbox.personas import PERSONAS as PERSONAS
from calls.telephony.sandbox.personas import persona_for as persona_for
from calls.telephony.sandbox.simulation import run_call as run_call
from calls.telephony.sandbox.state import ACCOUNT_SID as ACCOUNT_SID
from calls.telephony.sandbox.state import PRICE_SECONDS as PRICE_SECONDS
from calls.telephony.sandbox.state import RECORDINGS_PATH as RECORDINGS_PATH
from calls.telephony.sandbox.state import price_of as price_of
from calls.telephony.sandbox.state import signs_fragment as signs_fragment
from calls.telephony.sandbox.state import webhook_auth_token as webhook_auth_token
from calls.telephony.sandbox.tasks import run_sandbox_call_task as run_sandbox_call_task
from calls.telephony.sandbox.verbs import DIAL_TALK_SECONDS as DIAL_TALK_SECONDS
