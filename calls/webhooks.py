"""Twilio's webhooks: plain Django views, each checked against Twilio's signature.

Callbacks (status, answering machine, recording) answer 204 at once after one short
transaction: Twilio does not accept being slowed down (a 4xx/5xx is its error 11217) and
retries what fails; anything slower (updating the live call) goes to a task. Views that
answer TwiML never answer an error: a failure speaks the fallback's apology instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urldefrag

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callcenter.metrics import SIGNATURE_FAILURES, WEBHOOK_SECONDS
from calls import callbacks, deadlines, flow, inbound, links, telephony

logger = logging.getLogger(__name__)

# A Django view, sync or async (an async one returns an awaitable response).
View = Callable[..., Any]


def twilio_webhook(view: View) -> View:
    """Accept only POSTs signed by Twilio for the URL it was given; 403 otherwise.

    The URL is rebuilt from APP_URL, the public base URL every callback URL is made from,
    not from the request's scheme and host, which a TLS-terminating proxy rewrites. A
    callback registered with a connection-override fragment (``links.callback_url``) is
    accepted signed over exactly the URL we registered, with or without its fragment; any
    other request only over the URL as it arrived. The check runs in every environment:
    the sandbox carrier signs its requests too. Each request is timed in
    ``callcenter_webhook_seconds``, refused ones included. Works for async views too.
    """
    name = view.__name__

    def refused(request: HttpRequest) -> HttpResponse | None:
        url = _registered_url(request)
        signature = request.headers.get("X-Twilio-Signature", "")
        if signature and telephony.signature_is_valid(
            url=url, params=request.POST, signature=signature
        ):
            _strip_nul_characters(request)
            return None
        SIGNATURE_FAILURES.labels(view=name).inc()
        logger.warning("Refused %s to %s: missing or invalid Twilio signature.", name, url)
        return HttpResponseForbidden()

    webhook: View
    if asyncio.iscoroutinefunction(view):

        @functools.wraps(view)
        async def checked_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            with WEBHOOK_SECONDS.labels(view=name).time():
                return refused(request) or await view(request, *args, **kwargs)

        webhook = csrf_exempt(require_POST(checked_async))
    else:

        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            with WEBHOOK_SECONDS.labels(view=name).time():
                return refused(request) or view(request, *args, **kwargs)

        webhook = csrf_exempt(require_POST(checked))
    # Served past the browsers' middleware (calls.middleware.TwilioWebhookMiddleware).
    webhook.twilio_webhook = True  # type: ignore[union-attr]  # a mark on the function
    return webhook


def _strip_nul_characters(request: HttpRequest) -> None:
    """Take NUL characters out of a signed request's parameters: Twilio never sends one
    (a caller's speech or digits cannot hold it), PostgreSQL cannot store one, and a
    TwiML webhook must not answer an error (the call would end on Twilio's apology), so
    the rest of the text is what the view reads."""
    params = request.POST.lists()
    if not any("\x00" in name or "\x00" in "".join(values) for name, values in params):
        return
    logger.warning("Removed NUL characters from the parameters of %s.", request.path)
    cleaned = QueryDict(mutable=True)
    for name, values in request.POST.lists():
        cleaned.setlist(name.replace("\x00", ""), [value.replace("\x00", "") for value in values])
    cleaned._mutable = False
    request.POST = cleaned  # type: ignore[assignment]  # immutable, as the stubs want


def _registered_url(request: HttpRequest) -> str:
    """The URL Twilio was given for ``request``: the URL as it arrived (rebuilt on APP_URL),
    with the connection-override fragment we registered when it is one of our callbacks.

    A server never receives a fragment, so it is put back from the one definition of the
    callback's URL; ``telephony.signature_is_valid`` then accepts that URL with or without
    it. A request that is not exactly the registered URL (another path, a query) gets no
    fragment: only a signature over what arrived is accepted.
    """
    arrived = str(settings.APP_URL).rstrip("/") + request.get_full_path()
    match = request.resolver_match
    if match is None or match.app_name != "calls" or match.url_name not in links.CALLBACKS:
        return arrived
    registered = links.callback_url(match.url_name, int(match.kwargs["call_id"]))
    return registered if urldefrag(registered).url == arrived else arrived


def callback_view(view: Callable[[HttpRequest, int], None]) -> View:
    """A callback about one call: signed, kept by ``view``, answered 204."""

    @functools.wraps(view)
    def kept(request: HttpRequest, call_id: int) -> HttpResponse:
        view(request, call_id)
        return HttpResponse(status=204)

    return twilio_webhook(kept)


@callback_view
def call_status(request: HttpRequest, call_id: int) -> None:
    """Twilio's status callback for one call: kept, folded into the call, answered 204."""
    callbacks.record_call_status(call_id=call_id, params=request.POST.dict())


def twiml_view(view: View) -> View:
    """A webhook answering TwiML: signed, answered within WEBHOOK_DEADLINE_SECONDS
    (``deadlines``), and never an error to Twilio (an unexpected failure is logged and
    answered with the fallback's apology). Async views too."""

    def apology(request: HttpRequest, call_id: int) -> str:
        return flow.fallback(call_id=call_id, params=request.POST.dict())

    failed = "Webhook %s failed for call %s; apologising."

    if asyncio.iscoroutinefunction(view):

        @functools.wraps(view)
        async def answered_async(request: HttpRequest, call_id: int) -> HttpResponse:
            try:
                with deadlines.answering():
                    twiml = await view(request, call_id)
            except Exception:
                logger.exception(failed, view.__name__, call_id)
                twiml = await flow.in_thread(apology)(request, call_id)
            return HttpResponse(twiml, content_type="text/xml; charset=utf-8")

        return twilio_webhook(answered_async)

    @functools.wraps(view)
    def answered(request: HttpRequest, call_id: int) -> HttpResponse:
        try:
            with deadlines.answering():
                twiml = view(request, call_id)
        except Exception:
            logger.exception(failed, view.__name__, call_id)
            twiml = apology(request, call_id)
        return HttpResponse(twiml, content_type="text/xml; charset=utf-8")

    return twilio_webhook(answered)


@twiml_view
def answer(request: HttpRequest, call_id: int) -> str:
    """The callee picked up: greet and listen."""
    return flow.answer(call_id=call_id, params=request.POST.dict())


@twiml_view
async def turn(request: HttpRequest, call_id: int) -> str:
    """The callee answered (or stayed silent, ``?silence=1``; ``?retry=1``: the model's
    second try; ``?reply=<token>``: they spoke over that reply): the next line."""
    return await flow.turn(
        call_id=call_id,
        params=request.POST.dict(),
        silence=request.GET.get("silence") == "1",
        retry=request.GET.get("retry") == "1",
        reply_token=request.GET.get("reply", ""),
    )


@twiml_view
async def continue_reply(request: HttpRequest, call_id: int) -> str:
    """The rest of an AI reply whose first sentence is playing."""
    return await flow.continue_reply(call_id=call_id, token=request.GET.get("reply", ""))


@twiml_view
def voicemail(request: HttpRequest, call_id: int) -> str:
    """A machine answered: the message after the beep."""
    return flow.voicemail(call_id=call_id, params=request.POST.dict())


@twiml_view
def transfer_ended(request: HttpRequest, call_id: int) -> str:
    """The transferred leg ended: the call ends too."""
    return flow.transfer_ended(call_id=call_id, params=request.POST.dict())


@twiml_view
def relay_ended(request: HttpRequest, call_id: int) -> str:
    """A relay call's ConversationRelay session ended (its <Connect> action)."""
    return flow.relay_ended(call_id=call_id, params=request.POST.dict())


@twiml_view
def fallback(request: HttpRequest, call_id: int) -> str:
    """Twilio could not use our TwiML: apologise, offer the opt-out, hang up."""
    return flow.fallback(call_id=call_id, params=request.POST.dict())


@twiml_view
def fallback_opt_out(request: HttpRequest, call_id: int) -> str:
    """The key pressed after the fallback's opt-out offer."""
    return flow.fallback_opt_out(call_id=call_id, params=request.POST.dict())


@callback_view
def machine_detection(request: HttpRequest, call_id: int) -> None:
    """The asynchronous answering-machine verdict: kept; a machine's call is turned to
    its voicemail (or hung up) by a task, after this answers."""
    callbacks.receive_machine_detection(call_id=call_id, params=request.POST.dict())


@callback_view
def recording(request: HttpRequest, call_id: int) -> None:
    """A recording's status: a completed recording's reference is kept on the call."""
    callbacks.record_recording(call_id=call_id, params=request.POST.dict())


# --- Calls our numbers receive ---------------------------------------------------------------


def number_twiml_view(view: Callable[[HttpRequest], str]) -> View:
    """A webhook of the numbers themselves (not of one call) answering TwiML: signed,
    answered within WEBHOOK_DEADLINE_SECONDS, never an error to Twilio (an unexpected
    failure is answered with the inbound fallback's apology)."""

    @functools.wraps(view)
    def answered(request: HttpRequest) -> HttpResponse:
        try:
            with deadlines.answering():
                twiml = view(request)
        except Exception:
            logger.exception(
                "Webhook %s failed for call %s; apologising.",
                view.__name__,
                request.POST.get("CallSid", "?"),
            )
            twiml = inbound.fallback(params=request.POST.dict())
        return HttpResponse(twiml, content_type="text/xml; charset=utf-8")

    return twilio_webhook(answered)


@number_twiml_view
def inbound_call(request: HttpRequest) -> str:
    """Someone rings one of our numbers (its voice URL): a contact calling back gets its
    campaign's conversation, anyone else a short message (see ``calls.inbound``)."""
    return inbound.answer(params=request.POST.dict())


@number_twiml_view
def inbound_opt_out(request: HttpRequest) -> str:
    """The key a caller who is not a contact pressed after the opt-out offer."""
    return inbound.opt_out(params=request.POST.dict())


@number_twiml_view
def inbound_fallback(request: HttpRequest) -> str:
    """Twilio could not use our TwiML for an incoming call (the numbers' fallback URL)."""
    return inbound.fallback(params=request.POST.dict())


@twilio_webhook
def inbound_status(request: HttpRequest) -> HttpResponse:
    """The status callback of the numbers' calls: kept, folded into the call, 204."""
    inbound.record_status(params=request.POST.dict())
    return HttpResponse(status=204)
