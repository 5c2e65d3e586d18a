"""Twilio's webhooks take a short way through the web server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

from callcenter.middleware import AsyncCapableMiddleware
from calls import flow

# Where every Twilio webhook lives (calls/urls.py).
WEBHOOK_PREFIX = "/twilio/"


class TwilioWebhookMiddleware(AsyncCapableMiddleware):
    """Twilio's webhooks skip the middleware that comes after this one.

    What comes after (sessions, CSRF, authentication, messages, locale, security headers,
    the per-view request metrics) is there for people with browsers. Twilio sends no
    cookies and is checked by its signature (``webhooks.twilio_webhook``, which also times
    each request in ``callcenter_webhook_seconds``). Under the ASGI server each of
    Django's own middlewares costs two trips to a thread of its own (one made for each
    request), which on the turn webhook, the hot path of every call, came to more CPU
    than the webhook's own database work (docs/decisions/0003-asgi-webhook-fast-path.md).
    So a request for a view marked ``twilio_webhook`` goes straight to it here: an async
    view on the event loop, a sync one in the webhooks' fixed pool of threads. Any other
    request goes on down the chain. Under WSGI (sync) there are no such trips, and nothing
    is skipped.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        match = None
        if request.path_info.startswith(WEBHOOK_PREFIX):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                pass  # Django answers its 404 further down
        if match is None or not getattr(match.func, "twilio_webhook", False):
            return await self.get_response(request)
        request.resolver_match = match
        view = match.func
        if iscoroutinefunction(view):
            return await view(request, *match.args, **match.kwargs)
        return await flow.in_thread(view)(request, *match.args, **match.kwargs)


class WebhookASGIHandler(ASGIHandler):
    """Django's ASGI handler, without a thread of its own for each of Twilio's webhooks.

    Django gives every request a new thread for its sync work (a ThreadSensitiveContext:
    the request signals, the response's close, sync middleware and views). Twilio's
    webhooks have none of that work worth a thread: their middleware and views run on the
    event loop or in the webhooks' pool of threads (``TwilioWebhookMiddleware``), so for
    them a thread was made and joined for two trips that do nothing, on every status
    callback and every turn (docs/decisions/0003-asgi-webhook-fast-path.md). Their
    remaining trips go to asgiref's one shared thread.
    """

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http" and scope["path"].startswith(WEBHOOK_PREFIX):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
