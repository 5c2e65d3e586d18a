"""Request bodies over their limit are refused before they are read, not after.

Django's ASGI handler reads the whole body (to a temporary file) before any middleware or
view runs, so the API's own size check and its authentication came after a stranger's
200 MiB had been received. These wrappers sit outside Django, around the ASGI and WSGI
applications: a request whose Content-Length is over the limit is answered 413 unread, and
one sent without it (chunked) is cut off with a 413 once it has sent one byte too many.

The limit is API_MAX_BODY_BYTES (DATA_UPLOAD_MAX_MEMORY_SIZE), except for the contact
file uploads (multipart, to the API's contacts of a campaign or the admin's import form),
which may reach CONTACT_IMPORT_MAX_BYTES when the request carries credentials that may send
one (may_send_a_file): checked from the headers alone, before a byte of the body is read,
so that a stranger gets the API's limit there too.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import trans_real

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATHS = re.compile(
    r"/api/v1/campaigns/[^/]+/contacts/|/admin/campaigns/contactimport/add/", re.ASCII
)


def body_limit(path: str, content_type: str) -> int:
    """The most bytes a request to ``path`` with this Content-Type may send."""
    if content_type.lower().startswith("multipart/") and UPLOAD_PATHS.fullmatch(path):
        return settings.CONTACT_IMPORT_MAX_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def may_send_a_file(request: HttpRequest) -> bool:
    """Whether ``request`` (its headers: its body is not read) carries credentials that may
    send a contact file: the session of an active user (the admin's import form), or, on
    the API, credentials one of its authenticators accepts (a JWT, an API key)."""
    from importlib import import_module

    from rest_framework.authentication import BaseAuthentication, SessionAuthentication
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request
    from rest_framework.settings import api_settings

    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if session_key:
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(request)
        if user.is_authenticated and user.is_active:
            return True
    if not request.path_info.startswith("/api/"):
        return False
    authenticators = [
        authenticator()
        # api_settings imports the classes; the stub types them as the dotted paths.
        for authenticator in cast(
            "list[type[BaseAuthentication]]", api_settings.DEFAULT_AUTHENTICATION_CLASSES
        )
        # The session was looked at above; DRF's would check CSRF, reading the body.
        if not issubclass(authenticator, SessionAuthentication)
    ]
    try:
        return Request(request, authenticators=authenticators).user.is_authenticated
    except APIException:  # credentials given, but refused
        return False


def _asgi_may_send_a_file(scope: Scope) -> bool:
    try:
        return may_send_a_file(ASGIRequest(scope, io.BytesIO()))
    finally:
        # Outside Django's request cycle, nothing else would hand the connection back.
        connections.close_all()


class BodyTooLarge(Exception):
    """The client sent more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def too_large_answer(
    *, size: int | None, limit: int, accept_language: str
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The 413's headers and body, in the API's error shape and the client's language."""
    language = _language(accept_language)
    with translation.override(language):
        if size is None:
            message = _("The request body is larger than the limit of %(limit)s bytes.") % {
                "limit": limit
            }
        else:
            message = _("The request body has %(size)s bytes; the limit is %(limit)s.") % {
                "size": size,
                "limit": limit,
            }
    body = json.dumps({"code": "too_large", "message": message, "errors": []}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"content-language", language.encode()),
        # The rest of the body is not read: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    return headers, body


def _language(accept_language: str) -> str:
    for code, _quality in trans_real.parse_accept_lang_header(accept_language):
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class LimitBodyASGI:
    """ASGI middleware: refuses bodies over their limit before the application reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        accept_language = headers.get(b"accept-language", b"").decode("latin-1")
        limit = body_limit(scope["path"], content_type)
        if limit > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not await sync_to_async(
            _asgi_may_send_a_file
        )(scope):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length.isdigit() and int(length) > limit:
            await self._refuse(send, size=int(length), limit=limit, language=accept_language)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send, size=None, limit=limit, language=accept_language)

    @staticmethod
    async def _refuse(send: Send, *, size: int | None, limit: int, language: str) -> None:
        headers, body = too_large_answer(size=size, limit=limit, accept_language=language)
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class LimitBodyWSGI:
    """WSGI middleware: the same refusal by Content-Length, for WSGI servers. A body sent
    without it needs no counting here: Django's WSGIRequest reads no more than
    CONTENT_LENGTH bytes of wsgi.input, none when it is missing."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        limit = body_limit(environ.get("PATH_INFO", ""), environ.get("CONTENT_TYPE", ""))
        if limit > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not may_send_a_file(
            WSGIRequest({**environ, "wsgi.input": io.BytesIO()})
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = (environ.get("CONTENT_LENGTH") or "").strip()
        language = environ.get("HTTP_ACCEPT_LANGUAGE", "")
        if length.isdigit() and int(length) > limit:
            return self._refuse(start_response, size=int(length), limit=limit, language=language)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(
        start_response: Callable, *, size: int | None, limit: int, language: str
    ) -> list[bytes]:
        headers, body = too_large_answer(size=size, limit=limit, accept_language=language)
        start_response(
            "413 Request Entity Too Large",
            [(name.decode(), value.decode()) for name, value in headers],
        )
        return [body]
