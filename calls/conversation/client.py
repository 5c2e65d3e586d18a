"""The SDK's clients, and its errors as the project's."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import weakref

import httpx2
import openai
from django.utils.translation import gettext_lazy as _

from callcenter.metrics import MODEL_ERRORS
from callcenter.text import truncate
from calls.conversation.base import (
    TRANSIENT_STATUSES,
    ConversationRejected,
    ConversationUnavailable,
)

# --- Plumbing -------------------------------------------------------------------------------


# The async clients of each event loop: a client's connection pool belongs to the loop
# it was made on. Under the ASGI server that is one loop for the process, so turns reuse
# connections; a sync caller going through async_to_sync gets a new loop, and so a client
# of its own, each time. They share one TLS context (``tls_context``).
_ASYNC_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def _async_client(*, api_key: str, base_url: str) -> openai.AsyncOpenAI:
    clients = _ASYNC_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, base_url)
    if key not in clients:
        clients[key] = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
        )
    return clients[key]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The SDK's own default TLS settings, made once per process: loading the certificate
    authorities is most of what a new client costs, which the first turn of each event
    loop would otherwise wait for (docs/decisions/0005-model-requests-as-plain-json.md)."""
    return httpx2.create_ssl_context()


@functools.lru_cache(maxsize=4)
def _client(*, api_key: str, base_url: str, timeout: float) -> openai.OpenAI:
    # One sync client per configuration keeps its connection pool across extractions.
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)


def _unreadable(what: object) -> ConversationUnavailable:
    """The model's stream could not be read (an OpenAI-compatible server gone astray)."""
    MODEL_ERRORS.labels(reason="invalid_output").inc()
    return ConversationUnavailable(
        f"OpenAI sent a stream chunk that could not be read: {str(what)[:200]}",
        reason=str(_("The AI model sent an answer that could not be read.")),
    )


def _failure(
    exc: openai.APIError, *, api_key: str
) -> ConversationUnavailable | ConversationRejected:
    """The project's error for an SDK error, counted."""
    if isinstance(exc, openai.APITimeoutError):
        MODEL_ERRORS.labels(reason="timeout").inc()
        return ConversationUnavailable(
            "OpenAI timed out",
            reason=str(_("The AI model did not answer in time.")),
            timed_out=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        MODEL_ERRORS.labels(reason="unavailable").inc()
        return ConversationUnavailable(
            f"OpenAI could not be reached: {exc.message}",
            reason=str(_("The AI model could not be reached.")),
        )
    provider_message = _provider_message(exc, api_key=api_key)
    if not isinstance(exc, openai.APIStatusError):  # an error event in the stream
        MODEL_ERRORS.labels(reason="unavailable").inc()
        return ConversationUnavailable(
            f"OpenAI stopped with an error: {provider_message}",
            reason=str(
                _("The AI model stopped with an error: %(message)s") % {"message": provider_message}
            ),
        )
    status = exc.status_code
    if status in TRANSIENT_STATUSES or status >= 500:
        MODEL_ERRORS.labels(reason="unavailable").inc()
        return ConversationUnavailable(
            f"OpenAI is unavailable (HTTP {status}): {provider_message}",
            reason=str(
                _("The AI model is unavailable right now (HTTP %(status)s).") % {"status": status}
            ),
            status=status,
        )
    MODEL_ERRORS.labels(reason="rejected").inc()
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        reason = _("The AI model did not accept the API key (OPENAI_API_KEY): %(message)s")
    else:
        reason = _("The AI model refused the request (HTTP %(status)s): %(message)s")
    return ConversationRejected(
        f"OpenAI refused the request (HTTP {status}): {provider_message}",
        reason=str(reason % {"status": status, "message": provider_message}),
        status=status,
        provider_message=provider_message,
    )


def _provider_message(exc: openai.APIError, *, api_key: str) -> str:
    """OpenAI's own words, without the API key should a server echo it."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = truncate(message or exc.message or type(exc).__name__)
    return text.replace(api_key, "***") if api_key else text


def _since(started: float) -> float:
    return time.perf_counter() - started


def _ms_since(started: float) -> int:
    return round(_since(started) * 1000)
