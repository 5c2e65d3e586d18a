"""Probing the model before going live (`probe_model`): one tiny request shaped as a
turn's or an extraction's, adapted to as calls adapt."""

from __future__ import annotations

import asyncio
import datetime
import time
import zoneinfo
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from calls.agent import system_prompt
from calls.conversation.base import (
    TOKEN_PARAMETERS,
    ConversationNotConfigured,
    ConversationRejected,
    is_configured,
)
from calls.conversation.client import _async_client, _client, _failure, _provider_message, _since
from calls.conversation.extraction import _extraction_prompt, _transcript_text
from calls.conversation.models import (
    _adapt,
    _extraction_request,
    _reasoning_effort,
    _refused_parameter,
    _turn_request,
)

# --- Probing the model before going live ---------------------------------------------------

# The bound of a probe's answer: enough for a word, so a probe costs next to nothing (a
# reasoning model's bound also has OPENAI_REASONING_MAX_TOKENS, as a call's has).
PROBE_MAX_TOKENS = 16
# Refusals a probe adapts to before giving up: one for each model-dependent parameter.
PROBE_ADAPTATIONS = len(TOKEN_PARAMETERS) + 3


@dataclass(frozen=True)
class RefusedParameter:
    """A model-dependent parameter a server refused as unsupported (a 400), with the value
    sent and the server's words."""

    name: str
    value: Any
    message: str


@dataclass(frozen=True)
class ModelProbe:
    """What one tiny request shaped as a turn's (`kind` "turn") or an extraction's
    ("extraction") showed of DEFAULT_MODEL: the model-dependent parameters it took
    (`parameters`, as sent), those it refused first (`refused`: each is what a call would
    adapt to, after one refused request in each process), the seconds to the first chunk
    of a turn or to an extraction's answer, and why the answer ended."""

    kind: str
    model: str
    parameters: dict[str, Any]
    refused: tuple[RefusedParameter, ...]
    seconds: float
    finish_reason: str | None


def probe_model(*, kind: str, timeout: float) -> ModelProbe:
    """Send DEFAULT_MODEL a request built as a turn's (`kind="turn"`: streamed, with the
    tools, TEMPERATURE) or an extraction's ("extraction": JSON mode) is, its answer bounded
    to PROBE_MAX_TOKENS, within `timeout` seconds. A 400 refusing a model-dependent
    parameter is adapted to as calls adapt (`_adapt`) and sent again, and reported in
    `refused`. Raises ConversationNotConfigured, ConversationRejected (`parameter` set
    when a refused parameter could not be adapted to) or ConversationUnavailable.
    """
    if kind not in ("turn", "extraction"):
        raise ValueError(f"unknown probe kind {kind!r}")
    if not is_configured():
        raise ConversationNotConfigured
    model = settings.DEFAULT_MODEL
    api_key = settings.OPENAI_API_KEY
    if kind == "turn":
        now = datetime.datetime.now(zoneinfo.ZoneInfo(settings.TIME_ZONE))
        language = settings.DEFAULT_CALL_LANGUAGE
        turn_messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": system_prompt(
                    instructions="Greet the person in one word.", now_local=now, language=language
                ),
            },
            {"role": "user", "content": "Hola."},
        ]
        effort = _reasoning_effort(model)

        def build() -> dict[str, Any]:
            return _turn_request(
                model=model, messages=turn_messages, output_tokens=PROBE_MAX_TOKENS, effort=effort
            )

        def send(body: dict[str, Any]) -> tuple[float, str | None]:
            return async_to_sync(_probe_stream)(body, api_key=api_key, timeout=timeout)

    else:
        client = _client(api_key=api_key, base_url=settings.OPENAI_BASE_URL, timeout=timeout)
        extraction_messages = [
            {"role": "system", "content": _extraction_prompt(schema={}, language="en")},
            {"role": "user", "content": _transcript_text([{"role": "user", "content": "Hi."}])},
        ]

        def build() -> dict[str, Any]:
            return _extraction_request(
                model=model, messages=extraction_messages, output_tokens=PROBE_MAX_TOKENS
            )

        def send(body: dict[str, Any]) -> tuple[float, str | None]:
            started = time.perf_counter()
            completion = client.chat.completions.create(**body)
            choice = completion.choices[0] if completion.choices else None
            return _since(started), choice.finish_reason if choice else None

    refused: list[RefusedParameter] = []
    for _attempt in range(PROBE_ADAPTATIONS + 1):
        body = build()
        try:
            seconds, finish_reason = send(body)
        except openai.BadRequestError as exc:
            message = _provider_message(exc, api_key=api_key)
            parameter = _refused_parameter(exc.param, message) or ""
            # A parameter refused again (both names of the token bound, say) has nothing
            # left to adapt to: calls would go back and forth between the two.
            again = parameter in {refusal.name for refusal in refused}
            if parameter in body and not again and _adapt(exc, model=model, sent=body):
                refused.append(RefusedParameter(parameter, body[parameter], message))
                continue
            error = _failure(exc, api_key=api_key)
            if isinstance(error, ConversationRejected) and parameter in body:
                error.parameter = parameter
            raise error from exc
        except openai.APIError as exc:
            raise _failure(exc, api_key=api_key) from exc
        options = {name: body[name] for name in _MODEL_OPTIONS if name in body}
        return ModelProbe(
            kind=kind,
            model=model,
            parameters=options,
            refused=tuple(refused),
            seconds=seconds,
            finish_reason=finish_reason,
        )
    # Every adaptation was made and the model still refuses one more: as a refusal.
    last = refused[-1]
    raise ConversationRejected(
        f"OpenAI refused {last.name} after {len(refused)} adaptation(s): {last.message}",
        reason=str(
            _("The AI model refused the request (HTTP %(status)s): %(message)s")
            % {"status": 400, "message": last.message}
        ),
        status=400,
        provider_message=last.message,
        parameter=last.name,
    )


# The request's parameters that depend on the model (what `_model_options` decides).
_MODEL_OPTIONS = (*TOKEN_PARAMETERS, "temperature", "reasoning_effort", "response_format")


async def _probe_stream(
    body: dict[str, Any], *, api_key: str, timeout: float
) -> tuple[float, str | None]:
    """POST a turn's streamed request and read it to its end, within `timeout`: the
    seconds to its first chunk and its finish reason."""
    client = _async_client(api_key=api_key, base_url=settings.OPENAI_BASE_URL).with_options(
        timeout=timeout
    )
    started = time.perf_counter()
    first: float | None = None
    finish_reason: str | None = None
    stream = None
    try:
        async with asyncio.timeout(timeout):
            stream = await client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async for chunk in stream:
                first = _since(started) if first is None else first
                choices = (chunk.get("choices") if isinstance(chunk, dict) else None) or ()
                for choice in choices:
                    if isinstance(choice, dict):
                        finish_reason = choice.get("finish_reason") or finish_reason
    except TimeoutError as exc:
        raise openai.APITimeoutError(request=httpx2.Request("POST", "/chat/completions")) from exc
    finally:
        if stream is not None:
            await stream.close()
    return (_since(started) if first is None else first), finish_reason
