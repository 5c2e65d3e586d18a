"""Twilio, as the fault suite needs it: the fake REST API (with the faults a test asks
for) and a carrier that plays every call created there through the product's webhooks,
as Twilio would, checking that the callee always hears something."""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urldefrag, urljoin

import requests
from twilio.request_validator import RequestValidator

from tests.fakes.server import Scripted
from tests.fakes.twilio import FakeTwilio, error_body
from tests.reliability import faults
from tests.reliability.faults import PeriodicFaults

# What the callee of each outcome does once the phone rings.
ANSWERED, BUSY, NO_ANSWER = "answered", "busy", "no-answer"


class ScriptedTwilio(PeriodicFaults, FakeTwilio):
    """The fake Twilio REST API, plus: the dial request of each call it created (what the
    carrier plays), numbers it refuses (``refused``: number to Twilio error code), and
    faults on schedule (``PeriodicFaults``)."""

    def __init__(self, *, refused: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refused = refused or {}
        self.forms: dict[str, dict[str, list[str]]] = {}
        self._creating = threading.Lock()

    def creations_to(self, number: str) -> int:
        """Calls Twilio created to ``number``."""
        return sum(form["To"] == [number] for form in list(self.forms.values()))

    def _create_call(self, request):  # type: ignore[no-untyped-def]
        number = (request.form.get("To") or [""])[0]
        if number in self.refused:
            code = self.refused[number]
            return 400, error_body(400, code, f"The 'To' number {number} is not valid.")
        with self._creating:
            before = set(self._calls)
            answer = super()._create_call(request)
            for sid in set(self._calls) - before:
                self.forms[sid] = request.form
        return answer


def twilio_faults(*, timeout_seconds: float) -> list[Scripted]:
    """A 500, a 429 and a timeout, in turn, as Twilio answers them."""
    return [
        faults.error(500, error_body(500, 20500, "Internal server error.")),
        faults.error(429, error_body(429, 20429, "Too many requests.")),
        faults.timeout(timeout_seconds),
    ]


@dataclass(frozen=True)
class Problem:
    """Something a callee would have suffered, and on which call."""

    sid: str
    what: str


class Carrier:
    """Plays each call ``twilio`` created, as Twilio would, through the product's webhooks:
    signed status callbacks (retried as the URL's ``#rc=`` asks, ``retry_interval`` apart,
    when they fail; signed over the URL with its ``#rc=`` fragment for some calls and
    without it for the others, by the CallSid, since Twilio does not document which it
    signs), the answer URL, the callee's ``lines`` answering each <Gather>, then
    a hang-up, ``pause`` seconds between each of these. ``outcome`` says for each number
    whether the callee answers.

    Every TwiML answer must give the callee something to hear (<Say> or a <Play> that
    serves audio) or keep the line open on purpose (<Pause> then <Redirect>); an error,
    unreadable TwiML or silence is kept in ``problems``. A TwiML webhook that fails is
    followed by the call's FallbackUrl, as Twilio does.
    """

    def __init__(
        self,
        twilio: ScriptedTwilio,
        *,
        outcome: Callable[[str], str],
        lines: Sequence[str] = (),
        retry_interval: float = 1.0,
        pause: float = 0.0,
    ) -> None:
        self.twilio = twilio
        self.outcome = outcome
        self.lines = list(lines)
        self.retry_interval = retry_interval
        self.pause = pause
        self.problems: list[Problem] = []
        self.signed_with_fragment: set[str] = set()  # calls whose callbacks signed it
        self.failed_callbacks: list[str] = []  # deliveries that failed (and were retried)
        self.lost_callbacks: list[str] = []  # deliveries that failed every retry
        self.finished: set[str] = set()
        self.clips_played = 0  # <Play>s whose audio was served
        self._validator = RequestValidator(twilio.auth_token)
        self._started: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="carrier")
        self._stopping = threading.Event()
        self._holding = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="carrier", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def hold(self) -> None:
        """Let calls Twilio creates wait before they are played (until ``release``)."""
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()

    @property
    def idle(self) -> bool:
        """Every call created so far has been played to its end."""
        return set(self.twilio.forms) <= self.finished

    def _watch(self) -> None:
        while not self._stopping.is_set():
            for sid in [] if self._holding.is_set() else list(self.twilio.forms):
                if sid not in self._started:
                    self._started.add(sid)
                    self._pool.submit(self._play_safely, sid)
            time.sleep(0.05)

    def _play_safely(self, sid: str) -> None:
        try:
            self._play(sid)
        except Exception as error:  # noqa: BLE001 - a bug of the carrier fails the test
            self.problems.append(Problem(sid, f"the carrier failed: {error!r}"))
        finally:
            self.finished.add(sid)

    # --- One call -------------------------------------------------------------------------
    def _play(self, sid: str) -> None:
        form = self.twilio.forms[sid]
        first = {name: values[0] for name, values in form.items()}
        number = first["To"]
        base = {
            "CallSid": sid,
            "AccountSid": self.twilio.account_sid,
            "From": first["From"],
            "To": number,
            "Direction": "outbound-api",
        }
        sequence = itertools.count()
        started = datetime.now(UTC)

        def status(call_status: str, **extra: str) -> None:
            time.sleep(self.pause)
            self.twilio.set_call(sid, status=call_status)
            self._callback(
                first["StatusCallback"],
                {
                    **base,
                    "CallStatus": call_status,
                    "SequenceNumber": str(next(sequence)),
                    "Timestamp": email.utils.format_datetime(datetime.now(UTC)),
                    **extra,
                },
            )

        outcome = self.outcome(number)
        status("initiated")
        if outcome == BUSY:
            status("busy", CallDuration="0")
            return
        status("ringing")
        if outcome == NO_ANSWER:
            status("no-answer", CallDuration="0")
            return
        status("in-progress")
        self._converse(sid, first, base)
        seconds = str(max(1, int((datetime.now(UTC) - started).total_seconds())))
        self.twilio.set_call(
            sid,
            duration=seconds,
            answered_by="human",
            end_time=email.utils.format_datetime(datetime.now(UTC)),
        )
        status("completed", CallDuration=seconds, AnsweredBy="human")

    def _converse(self, sid: str, form: dict[str, str], base: dict[str, str]) -> None:
        lines = iter(self.lines)
        url, params = form["Url"], {**base, "CallStatus": "in-progress"}
        for _step in range(40):
            time.sleep(self.pause)
            if self.twilio.call(sid)["status"] in ("completed", "canceled"):
                return  # hung up through the REST API
            verbs = self._twiml(sid, url, params, fallback=form.get("FallbackUrl"))
            if verbs is None:
                return
            # A <Gather> waiting a second after its lines is a pause mid-reply (the
            # start of a reply, more to come): the callee lets the agent finish.
            gather = next(
                (verb for verb in verbs if verb.tag == "Gather" and verb.get("timeout") != "1"),
                None,
            )
            redirect = next((verb for verb in verbs if verb.tag == "Redirect"), None)
            if gather is not None:
                line = next(lines, None)
                if line is None:
                    return  # the callee has said all it had to say: it hangs up
                url = urljoin(url, gather.get("action") or url)
                params = {**base, "SpeechResult": line, "Confidence": "0.92"}
            elif redirect is not None:
                url, params = urljoin(url, (redirect.text or "").strip()), base
            else:
                return  # <Hangup>, <Dial> or the end of the document: the call is over
        self.problems.append(Problem(sid, "the conversation never ended"))

    def _twiml(
        self, sid: str, url: str, params: dict[str, str], *, fallback: str | None
    ) -> list[ElementTree.Element] | None:
        """The verbs the webhook at ``url`` answers (its fallback's when it fails), checked
        for silence; None when neither gives TwiML (Twilio's "application error")."""
        for attempt_url in (url, fallback):
            if attempt_url is None:
                break
            try:
                response = self._post(attempt_url, params)
            except requests.RequestException as error:
                self.problems.append(Problem(sid, f"{attempt_url}: {error!r}"))
                continue
            if response.status_code != 200:
                self.problems.append(Problem(sid, f"{attempt_url}: HTTP {response.status_code}"))
                continue
            try:
                root = ElementTree.fromstring(response.content)  # noqa: S314 - the product's own
            except ElementTree.ParseError:
                self.problems.append(Problem(sid, f"{attempt_url}: not TwiML"))
                continue
            verbs = list(root)
            self._check_heard(sid, attempt_url, verbs)
            return verbs
        self.problems.append(Problem(sid, "application error: no TwiML to play"))
        return None

    def _check_heard(self, sid: str, url: str, verbs: list[ElementTree.Element]) -> None:
        nested = [inner for verb in verbs for inner in (verb, *verb)]  # a <Gather>'s too
        spoken = [verb for verb in nested if verb.tag in ("Say", "Play")]
        for play in (verb for verb in spoken if verb.tag == "Play"):
            audio = requests.get((play.text or "").strip(), timeout=10)
            if audio.status_code != 200 or not audio.content:
                self.problems.append(
                    Problem(sid, f"{url}: <Play> of nothing ({audio.status_code})")
                )
            else:
                self.clips_played += 1
        if any(verb.tag == "Say" and (verb.text or "").strip() for verb in spoken):
            return
        if any(verb.tag == "Play" for verb in spoken):
            return
        tags = [verb.tag for verb in verbs]
        if tags[:1] == ["Pause"] and "Redirect" in tags:
            return  # the line kept open a moment while the reply is being made
        self.problems.append(Problem(sid, f"{url}: silence ({tags})"))

    # --- Requests -------------------------------------------------------------------------
    def _callback(self, url_with_overrides: str, params: dict[str, str]) -> None:
        """POST a status callback; retried as its ``#rc=`` says when it fails. The
        signature covers the URL with its fragment when ``signs_fragment`` says so."""
        url, fragment = urldefrag(url_with_overrides)
        overrides = dict(part.split("=", 1) for part in fragment.split("&") if "=" in part)
        retries = int(overrides.get("rc", "0"))
        signed_url = url
        if fragment and signs_fragment(params["CallSid"]):
            signed_url = url_with_overrides
            self.signed_with_fragment.add(params["CallSid"])
        for attempt in range(retries + 1):
            try:
                response = self._post(url, params, signed_url=signed_url)
            except requests.RequestException as error:
                failure = repr(error)
            else:
                if response.status_code < 400:
                    return
                failure = f"HTTP {response.status_code}"
            self.failed_callbacks.append(f"{params['CallStatus']} {url}: {failure}")
            if attempt < retries:
                time.sleep(self.retry_interval)
        self.lost_callbacks.append(f"{params['CallStatus']} {url}")

    def _post(
        self, url: str, params: dict[str, str], *, signed_url: str | None = None
    ) -> requests.Response:
        """POST ``params`` to ``url``, signed over ``signed_url`` (``url`` by default)."""
        signature = self._validator.compute_signature(signed_url or url, params)
        return requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=15
        )


def signs_fragment(sid: str) -> bool:
    """Whether Twilio, as the carrier plays it, signs call ``sid``'s callbacks over their
    URL with its connection-override fragment: about half the calls, by the SID
    (twilio.com/docs/usage/webhooks/webhooks-connection-overrides says nothing of it)."""
    return hashlib.sha256(sid.encode()).digest()[0] % 2 == 0
