"""The sandbox carrier's requests to our server, as Twilio makes them: signed, retried as a
webhook URL's connection overrides say, and the TwiML they fetch read as Twilio reads it.

Callbacks registered with a connection-override fragment (`#rc=3`) are signed over their
URL with the fragment for half the calls and without it for the others, chosen by the
CallSid, since Twilio does not document which it signs.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urldefrag, urlencode

import requests

from calls.telephony import signatures
from calls.telephony.sandbox.state import signs_fragment, webhook_auth_token

logger = logging.getLogger(__name__)

# Twilio's webhook defaults and connection overrides (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
DEFAULT_RETRIES = 1
DEFAULT_RETRY_POLICY = frozenset({"ct", "5xx"})

RETRIEVAL_FAILURE = 11200
CONNECTION_FAILURE = 11205
DOCUMENT_PARSE_FAILURE = 12100

# The TwiML the sandbox plays; anything else fails the document with 12100. <Start> and
# <Stop> (streams, background recordings) are accepted and have no effect; <Connect> only
# around one <ConversationRelay> (relay.py).
VERBS = frozenset(
    {"Say", "Play", "Pause", "Gather", "Redirect", "Hangup", "Reject", "Dial", "Record"}
    | {"Start", "Stop", "Connect"}
)
PROMPTS = frozenset({"Say", "Play", "Pause"})


class TwimlFailed(Exception):
    """A TwiML document could not be had: `code` is Twilio's error code for why."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Document:
    url: str
    verbs: list[ElementTree.Element]


class Webhooks:
    """The requests of one call `sid` to our webhooks, over one HTTP session."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def notify(self, url: str, params: Mapping[str, str], *, method: str) -> None:
        """Send a callback whose answer does not matter; a failure is only logged."""
        try:
            self.send(url, params, method=method)
        except TwimlFailed as failure:
            logger.warning(
                "Sandbox call %s: callback to %s failed (error %d: %s)",
                self.sid,
                urldefrag(url).url,
                failure.code,
                failure,
            )

    def send(self, url: str, params: Mapping[str, str], *, method: str) -> requests.Response:
        """Send a signed request to `url` as Twilio does, retried as its connection
        overrides say (`#rc=N`, `rp`, `ct`, `rt`); raises TwimlFailed when it fails. A
        URL with overrides is signed with or without them, as `signs_fragment` says."""
        target, fragment = urldefrag(url)
        overrides = {name: values[-1] for name, values in parse_qs(fragment).items()}
        retries = int(bounded(overrides.get("rc"), DEFAULT_RETRIES, low=0, high=5))
        policy = set(overrides["rp"].split(",")) if "rp" in overrides else DEFAULT_RETRY_POLICY
        timeout = (
            bounded(overrides.get("ct"), CONNECT_TIMEOUT * 1000, low=100, high=10000) / 1000,
            bounded(overrides.get("rt"), READ_TIMEOUT * 1000, low=100, high=15000) / 1000,
        )
        if method.upper() == "GET":
            separator = "&" if "?" in target else "?"
            target = f"{target}{separator}{urlencode(params)}"
            signed: Mapping[str, str] = {}
        else:
            signed = params
        signed_url = f"{target}#{fragment}" if fragment and signs_fragment(self.sid) else target
        headers = {
            "X-Twilio-Signature": signatures.compute_signature(
                token=webhook_auth_token(), url=signed_url, params=signed, keep_fragment=True
            ),
            "User-Agent": "TwilioProxy/1.1 (callcenter sandbox)",
        }
        for attempt in range(retries + 1):
            try:
                if method.upper() == "GET":
                    response = self.session.get(target, headers=headers, timeout=timeout)
                else:
                    response = self.session.post(
                        target, data=dict(params), headers=headers, timeout=timeout
                    )
            except requests.RequestException as exc:
                # ConnectTimeout is both; a read timeout or a broken answer is not "ct".
                connect = isinstance(exc, requests.ConnectTimeout) or (
                    isinstance(exc, requests.ConnectionError)
                    and not isinstance(exc, requests.Timeout)
                )
                kind = "ct" if connect else "rt"
                code = CONNECTION_FAILURE if connect else RETRIEVAL_FAILURE
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    return response
                kind = "5xx" if response.status_code >= 500 else "4xx"
                code, problem = RETRIEVAL_FAILURE, f"HTTP {response.status_code}"
            if attempt == retries or not (kind in policy or "all" in policy):
                raise TwimlFailed(code, problem)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def parse(content: bytes) -> list[ElementTree.Element]:
    """The verbs of a TwiML document; raises TwimlFailed (12100) when it is not one the
    sandbox can play."""
    try:
        # Our own server's answer, and expat (>= 2.4.1 in Python 3.11) caps entity
        # expansion; ElementTree resolves no external entities.
        root = ElementTree.fromstring(content)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise TwimlFailed(DOCUMENT_PARSE_FAILURE, f"not XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlFailed(DOCUMENT_PARSE_FAILURE, f"<{root.tag}> is not <Response>")
    for verb in root:
        if verb.tag not in VERBS:
            raise TwimlFailed(DOCUMENT_PARSE_FAILURE, f"<{verb.tag}> is not a verb it plays")
        if verb.tag == "Gather" and any(child.tag not in PROMPTS for child in verb):
            raise TwimlFailed(DOCUMENT_PARSE_FAILURE, "<Gather> holds more than Say/Play/Pause")
        if verb.tag == "Redirect" and not (verb.text or "").strip():
            raise TwimlFailed(DOCUMENT_PARSE_FAILURE, "<Redirect> without a URL")
        if verb.tag == "Connect":
            _check_connect(verb)
    return list(root)


def _check_connect(verb: ElementTree.Element) -> None:
    # https://www.twilio.com/docs/voice/twiml/connect/conversationrelay: `url` (required)
    # is the WebSocket's, ws:// or wss://; <Language> and <Parameter> are its only children.
    # The sandbox plays no other <Connect> noun (<Stream>, <Room>, ...).
    nouns = list(verb)
    if [noun.tag for noun in nouns] != ["ConversationRelay"]:
        raise TwimlFailed(
            DOCUMENT_PARSE_FAILURE, "<Connect> holds something other than one <ConversationRelay>"
        )
    relay = nouns[0]
    if not (relay.get("url") or "").startswith(("ws://", "wss://")):
        raise TwimlFailed(
            DOCUMENT_PARSE_FAILURE, "<ConversationRelay> without a ws:// or wss:// url"
        )
    if any(child.tag not in ("Language", "Parameter") for child in relay):
        raise TwimlFailed(
            DOCUMENT_PARSE_FAILURE, "<ConversationRelay> holds more than Language/Parameter"
        )


def bounded(value: Any, default: float, *, low: float = 0, high: float | None = None) -> float:
    """`value` as a number within [low, high], `default` when it is missing or not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(number):
        return default
    return max(low, min(number, high)) if high is not None else max(low, number)


def timestamp() -> str:
    """Now in RFC 2822 form, as Twilio writes its callbacks' Timestamp."""
    return email.utils.format_datetime(datetime.datetime.now(datetime.UTC))
