"""Requests refused before any view reads them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.translation import gettext as _

# A NUL as it arrives in a query string: percent-encoded, or raw from a lax client.
_QUERY_NUL = re.compile(r"%00|\x00")
_BODY_NUL = re.compile(rb"%00|\x00")


class AsyncCapableMiddleware:
    """A middleware that runs in the chain's own mode, sync or async, with no thread hop
    (Django's MiddlewareMixin runs its hooks through sync_to_async): a subclass's
    ``__call__`` returns its coroutine when ``is_async``."""

    sync_capable = True
    async_capable = True
    # Each subclass defines it: declared here for the type checker (markcoroutinefunction).
    __call__: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class NulCharacterMiddleware(AsyncCapableMiddleware):
    """400 for a NUL character in the path or the query string, on every route.

    PostgreSQL cannot store a NUL in text, so a NUL reaching a query (a clip's token, a
    filter, an admin search) was a server error. No URL of ours carries one, so it is
    refused here, before any view, Twilio's webhooks included; so is one in a URL-encoded
    form (the admin's). JSON and multipart bodies are checked by the API's parsers
    (callcenter.parsers), Twilio's parameters by the webhooks (calls.webhooks).
    Async-capable, so the webhooks' path costs no thread.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        return _refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return _refusal(request) or await self.get_response(request)


def _form_body_has_nul(request: HttpRequest) -> bool:
    """Whether a URL-encoded form body holds a NUL. Such a body is read into memory by
    whoever reads the form (up to DATA_UPLOAD_MAX_MEMORY_SIZE), so reading it here costs
    nothing more. Twilio's signed parameters are left to the webhooks (calls.webhooks),
    which must check the signature over them as sent."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return False
    if request.content_type != "application/x-www-form-urlencoded":
        return False
    if request.path_info.startswith("/twilio/"):
        return False
    try:
        body = request.body
    except RequestDataTooBig:
        return False  # the view that reads the form answers 400
    return bool(_BODY_NUL.search(body))


def _refusal(request: HttpRequest) -> HttpResponse | None:
    if "\x00" in request.path_info:
        part = "path"
        message = _("The URL's path contains a NUL character (%00), which is not allowed.")
    elif _QUERY_NUL.search(request.META.get("QUERY_STRING", "")):
        part = "query"
        message = _("The URL's query string contains a NUL character (%00), which is not allowed.")
    elif _form_body_has_nul(request):
        part = "body"
        message = _("The form's data contains a NUL character (%00), which is not allowed.")
    else:
        return None
    if request.path_info.startswith("/api/"):
        # The API's error body (callcenter.api.exception_handler).
        error = {"field": part, "code": "nul_character", "message": message}
        return JsonResponse({"code": "invalid", "message": message, "errors": [error]}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
