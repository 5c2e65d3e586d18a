"""Twilio's webhooks: plain Django views, each checked against Twilio's signature.

Status callbacks answer 204 at once after one short transaction: Twilio does not accept
being slowed down (a 4xx/5xx is its error 11217) and retries what fails.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callcenter.metrics import SIGNATURE_FAILURES, WEBHOOK_SECONDS
from calls import telephony
from calls.services import record_call_status

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def twilio_webhook(view: View) -> View:
    """Accept only POSTs signed by Twilio for the URL it was given; 403 otherwise.

    The URL is rebuilt from APP_URL, the public base URL every callback URL is made from,
    not from the request's scheme and host, which a TLS-terminating proxy rewrites. The
    check runs in every environment: the sandbox carrier signs its requests too. Each
    request is timed in ``callcenter_webhook_seconds``, refused ones included.
    """
    name = view.__name__

    @csrf_exempt
    @require_POST
    @functools.wraps(view)
    def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        with WEBHOOK_SECONDS.labels(view=name).time():
            url = settings.APP_URL.rstrip("/") + request.get_full_path()
            signature = request.headers.get("X-Twilio-Signature", "")
            if not signature or not telephony.signature_is_valid(
                url=url, params=request.POST, signature=signature
            ):
                SIGNATURE_FAILURES.labels(view=name).inc()
                logger.warning("Refused %s to %s: missing or invalid Twilio signature.", name, url)
                return HttpResponseForbidden()
            return view(request, *args, **kwargs)

    return checked


@twilio_webhook
def call_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Twilio's status callback for one call: kept, folded into the call, answered 204."""
    record_call_status(call_id=call_id, params=request.POST.dict())
    return HttpResponse(status=204)
