"""Partner webhooks: events signed and POSTed to the partners' endpoints, retried for a day.

``emit_event`` records one delivery per subscribed endpoint and queues it after commit;
``deliver`` makes one attempt, claimed by a compare-and-set so that two workers never send
the same attempt; failed attempts are retried by the ``retry-webhook-deliveries`` beat tick
with exponential backoff until 24 hours after the event. docs/webhooks.md is the partners'
side of this contract: the envelope, the headers and how to check a signature.

The package: ``signatures``, ``endpoints``, ``events`` (``emit_event``) and ``sending``
(``deliver`` and the retries); import from ``campaigns.deliveries``.
"""

from __future__ import annotations

from campaigns.deliveries.endpoints import URL_SCHEMES as URL_SCHEMES
from campaigns.deliveries.endpoints import create_webhook_endpoint as create_webhook_endpoint
from campaigns.deliveries.endpoints import rotate_webhook_secret as rotate_webhook_secret
from campaigns.deliveries.endpoints import update_webhook_endpoint as update_webhook_endpoint
from campaigns.deliveries.events import EVENT_ID_NAMESPACE as EVENT_ID_NAMESPACE
from campaigns.deliveries.events import emit_event as emit_event
from campaigns.deliveries.sending import CLAIM_LEASE as CLAIM_LEASE
from campaigns.deliveries.sending import FIRST_RETRY_SECONDS as FIRST_RETRY_SECONDS
from campaigns.deliveries.sending import MAX_RETRY_SECONDS as MAX_RETRY_SECONDS
from campaigns.deliveries.sending import RESPONSE_BODY_LIMIT as RESPONSE_BODY_LIMIT
from campaigns.deliveries.sending import RETRY_JITTER as RETRY_JITTER
from campaigns.deliveries.sending import RETRY_WINDOW as RETRY_WINDOW
from campaigns.deliveries.sending import Attempt as Attempt
from campaigns.deliveries.sending import deliver as deliver
from campaigns.deliveries.sending import queue_due_deliveries as queue_due_deliveries
from campaigns.deliveries.sending import redeliver as redeliver
from campaigns.deliveries.sending import retry_delay as retry_delay
from campaigns.deliveries.signatures import DELIVERY_HEADER as DELIVERY_HEADER
from campaigns.deliveries.signatures import EVENT_HEADER as EVENT_HEADER
from campaigns.deliveries.signatures import EVENT_TYPE_HEADER as EVENT_TYPE_HEADER
from campaigns.deliveries.signatures import SIGNATURE_HEADER as SIGNATURE_HEADER
from campaigns.deliveries.signatures import SIGNATURE_TOLERANCE as SIGNATURE_TOLERANCE
from campaigns.deliveries.signatures import sign as sign
from campaigns.deliveries.signatures import verify_signature as verify_signature
