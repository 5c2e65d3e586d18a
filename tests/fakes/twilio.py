"""A fake Twilio REST API on 127.0.0.1, for driving the real SDK over HTTP in tests.

It serves the Call endpoints `calls/telephony/twilio.py` uses (create, fetch, update), the
Recording resource (fetch, delete, its media, and starting one on a live call), and the
account's own resource, phone numbers and verified caller ids (the go-live preflight reads
them, following their pages, and points the numbers at our inbound webhooks: a number is
fetched and updated too), checks HTTP Basic auth like Twilio, answers with Twilio's JSON
shapes, records every request,
and plays scripted faults (error statuses, slow answers, dropped connections) before
answering normally again. Like Twilio, a Call resource shows no price until some time
after its end (`price_delay` after its `end_time`, by `clock`), then a completed call's
price as a negative string at `price_per_minute` per started minute; a call not charged
(busy, no answer, failed, canceled) keeps none. With Twilio's OpenAPI spec loaded, every
request is checked against it: a request the real API would not accept is answered 400 and
kept in `violations`, which the `fake_twilio` fixture requires to be empty at the end of a
test.
"""

from __future__ import annotations

import base64
import binascii
import copy
import email.utils
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import SplitResult, parse_qs

from tests.fakes import server
from tests.fakes.server import FakeRequestHandler, LocalFakeServer, Response, json_response
from tests.fakes.twilio_spec import TwilioSpec

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fedcba9876543210" * 2
API_VERSION = "2010-04-01"
ENDED_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Twilio's usual error code for an HTTP status, used when a scripted fault names none.
DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
CALL_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls(?:/(?P<sid>[^/.]+))?\.json"
)
ACCOUNT_PATH = re.compile(rf"/{API_VERSION}/Accounts/(?P<account>[^/.]+)\.json")
# The Recording resource (GET and DELETE .../Recordings/{Sid}.json) and its media (the
# resource's URI with .mp3 or .wav instead of .json):
# https://www.twilio.com/docs/voice/api/recording#fetch-a-recording-resource and
# https://www.twilio.com/docs/voice/api/recording#fetch-a-recording-media-file.
RECORDING_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Recordings/(?P<sid>[^/.]+)"
    r"(?P<extension>\.json|\.mp3|\.wav)"
)
# A live call's recordings: POST starts one ("Create a Recording resource",
# https://www.twilio.com/docs/voice/api/recording#create-a-recording-resource).
CALL_RECORDINGS_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/.]+)/Recordings\.json"
)
# The media types Twilio serves a recording's audio in, by the extension asked for.
MEDIA_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/x-wav"}
# The account's lists the fake serves, by path segment: the key of their records in a page.
LISTS = {
    "IncomingPhoneNumbers": "incoming_phone_numbers",
    "OutgoingCallerIds": "outgoing_caller_ids",
}
LIST_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/(?P<list>{'|'.join(LISTS)})\.json"
)
NUMBER_PATH = re.compile(
    rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers/(?P<sid>[^/.]+)\.json"
)
# The IncomingPhoneNumber update parameters the fake keeps, by the resource's JSON field
# (twilio.com/docs/phone-numbers/api/incomingphonenumber-resource, "Update an
# IncomingPhoneNumber resource"; POST .../IncomingPhoneNumbers/{Sid}.json in the spec).
NUMBER_FIELDS = {
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceFallbackMethod": "voice_fallback_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceApplicationSid": "voice_application_sid",
    "TrunkSid": "trunk_sid",
    "FriendlyName": "friendly_name",
}
# Twilio's PageSize when a request names none, and the most it takes (the spec's maximum).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RecordedRequest(server.RecordedRequest):
    form: dict[str, list[str]]  # repeated names keep every value, in order


class _Handler(FakeRequestHandler):
    def do_DELETE(self) -> None:
        self._serve()


class FakeTwilio(LocalFakeServer[RecordedRequest]):
    """A fake Twilio server; use as a context manager or with start() and stop()."""

    thread_name = "fake-twilio"
    handler_class = _Handler

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        spec: TwilioSpec | None = None,
        price_delay: timedelta = timedelta(seconds=5),
        price_per_minute: Decimal = Decimal("0.0130"),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.spec = spec
        # Twilio's Call resource has "price" null until some seconds to minutes after the
        # call ends (the spec's `price`: "Populated after the call is
        # completed. May not be immediately available"). Tests change these as they go.
        self.price_delay = price_delay
        self.price_per_minute = price_per_minute
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._calls: dict[str, dict[str, Any]] = {}
        # The Account resource's status (active, suspended, closed) and type (Trial, Full).
        self.account_status = "active"
        self.account_type = "Full"
        self.account_name = "Callcenter"
        # The account's phone numbers and verified caller ids, by list, in creation order.
        self._lists: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in LISTS}
        # Recording resources by SID, and each one's audio.
        self._recordings: dict[str, dict[str, Any]] = {}
        self._media: dict[str, bytes] = {}
        self._violations: list[str] = []
        self._lost_creations: list[int] = []
        self._faults_when: list[tuple[Callable[[RecordedRequest], bool], server.Scripted]] = []

    # --- Scripting ------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        code: int | None = None,
        message: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` and Twilio's error JSON; with
        `when`, the next `times` requests it is true of (a list's second page, say)."""
        code = code if code is not None else DEFAULT_CODES.get(status)
        body = error_body(status, code, message or f"Scripted failure with status {status}.")
        if when is None:
            self._queue(times, status=status, body=body, headers=headers)
            return
        scripted = server.Scripted(status=status, body=body, headers=dict(headers or {}))
        with self._lock:
            self._faults_when.extend((when, scripted) for _ in range(times))

    def drop_next(self, *, times: int = 1) -> None:
        """Read the next `times` requests, then close the connection without answering."""
        self._queue(times, drop=True)

    def lose_next_creation(self, *, status: int = 502) -> None:
        """Create the next call, then answer `status` as if the answer were lost on the way:
        the call exists at Twilio but the dialer never hears its SID."""
        with self._lock:
            self._lost_creations.append(status)

    def set_call(self, sid: str, **fields: Any) -> dict[str, Any]:
        """Create or change the Call resource `sid` (fields as in Twilio's JSON). A `price`
        given here is shown as is; otherwise the fake prices a completed call itself."""
        with self._lock:
            call = self._calls.get(sid) or self._new_call(sid=sid, to="", from_="")
            call.update(fields, date_updated=self._now())
            self._calls[sid] = call
            return copy.deepcopy(call)

    def add_recording(
        self, call_sid: str, *, duration: int = 7, audio: bytes | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Give the account a completed recording of the call `call_sid` (`audio` its
        media; some bytes when None)."""
        record = self._new_recording(call_sid, status="completed", duration=str(duration))
        record.update(fields)
        with self._lock:
            self._recordings[record["sid"]] = record
            self._media[record["sid"]] = (
                audio if audio is not None else b"ID3" + record["sid"].encode()
            )
        return copy.deepcopy(record)

    def add_number(self, phone_number: str, **fields: Any) -> dict[str, Any]:
        """Give the account the phone number `phone_number` (an IncomingPhoneNumber)."""
        record = self._new_number(phone_number) | fields
        with self._lock:
            self._lists["IncomingPhoneNumbers"][record["sid"]] = record
        return copy.deepcopy(record)

    def add_caller_id(self, phone_number: str, **fields: Any) -> dict[str, Any]:
        """Verify `phone_number` as an outgoing caller id of the account."""
        record = self._new_caller_id(phone_number) | fields
        with self._lock:
            self._lists["OutgoingCallerIds"][record["sid"]] = record
        return copy.deepcopy(record)

    # --- Inspection -----------------------------------------------------------------------
    def requests_to(self, method: str, path_suffix: str) -> list[RecordedRequest]:
        """Requests with `method` whose path ends with `path_suffix` (say "/Calls.json")."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def call(self, sid: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._calls[sid])

    @property
    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._calls.values()))

    @property
    def recordings(self) -> dict[str, dict[str, Any]]:
        """The account's Recording resources (deleted ones are gone), by SID."""
        with self._lock:
            return copy.deepcopy(self._recordings)

    @property
    def numbers(self) -> dict[str, dict[str, Any]]:
        """The account's phone numbers (IncomingPhoneNumbers), by phone number."""
        with self._lock:
            records = self._lists["IncomingPhoneNumbers"].values()
            return {record["phone_number"]: copy.deepcopy(record) for record in records}

    @property
    def violations(self) -> list[str]:
        """Where requests (or the fake's own answers) broke Twilio's OpenAPI spec."""
        with self._lock:
            return list(self._violations)

    def take_violations(self) -> list[str]:
        """The violations so far, forgotten: for tests that break the spec on purpose."""
        with self._lock:
            violations, self._violations = self._violations, []
            return violations

    # --- Serving (called from handler threads) --------------------------------------------
    def _parse_request(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        return RecordedRequest(
            method=method,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            form=parse_qs(body.decode(), keep_blank_values=True),
            headers=headers,
        )

    def _record(self, request: RecordedRequest) -> tuple[server.Scripted | None, list[str]]:
        """A fault scripted for requests like this one first, else the next in line."""
        with self._lock:
            index = next(
                (i for i, (when, _) in enumerate(self._faults_when) if when(request)), None
            )
            scripted = self._faults_when.pop(index)[1] if index is not None else None
        if scripted is None:
            return super()._record(request)
        problems = self._check_request(request)
        with self._lock:
            self._requests.append(request)
        return scripted, problems

    def _check_request(self, request: RecordedRequest) -> list[str]:
        """Where the request breaks the spec, kept in `violations` too."""
        if self.spec is None or _is_media(request.path):
            # A recording's media is no operation of the spec: it is the resource's URI
            # with another extension (see RECORDING_PATH).
            return []
        violations = self.spec.check_request(
            method=request.method,
            path=request.path,
            query=request.query,
            form=request.form,
            content_type=request.headers.get("content-type"),
        )
        with self._lock:
            self._violations.extend(violations)
        return violations

    def _answer(self, request: RecordedRequest, problems: list[str]) -> Response:
        match = RECORDING_PATH.fullmatch(request.path)
        if match and match["extension"] != ".json" and request.method == "GET":
            media = self._recording_media(request, match)
            if media is not None:
                return media
        status, body = self._route(request, problems)
        if status == 204:
            return 204, {}, b""
        self._check_answer(request, status, body)
        return json_response(status, body)

    def _route(self, request: RecordedRequest, violations: list[str]) -> tuple[int, Any]:
        if not self._authorized(request.headers.get("authorization", "")):
            return 401, error_body(401, 20003, "Authenticate")
        if violations:
            # No Twilio code: the fake, not Twilio, found these.
            return 400, error_body(400, None, "; ".join(violations))
        if (match := ACCOUNT_PATH.fullmatch(request.path)) and request.method == "GET":
            if match["account"] != self.account_sid:
                return _not_found(request.path)
            return 200, self._account()
        if (match := LIST_PATH.fullmatch(request.path)) and request.method == "GET":
            if match["account"] != self.account_sid:
                return _not_found(request.path)
            return self._list_page(request, match["list"])
        if match := NUMBER_PATH.fullmatch(request.path):
            if match["account"] != self.account_sid:
                return _not_found(request.path)
            return self._number(request, match["sid"])
        if match := RECORDING_PATH.fullmatch(request.path):
            if match["account"] != self.account_sid or match["extension"] != ".json":
                return _not_found(request.path)
            return self._recording(request, match["sid"])
        if (match := CALL_RECORDINGS_PATH.fullmatch(request.path)) and request.method == "POST":
            if match["account"] != self.account_sid:
                return _not_found(request.path)
            return self._start_recording(request, match["call"])
        match = CALL_PATH.fullmatch(request.path)
        if match is None or match["account"] != self.account_sid:
            return _not_found(request.path)
        sid = match["sid"]
        if sid is None and request.method == "POST":
            return self._create_call(request)
        if sid is None and request.method == "GET":
            return self._list_calls(request)
        if sid is not None and request.method == "GET":
            with self._lock:
                call = self._calls.get(sid)
                if call is None:
                    return _not_found(request.path)
                return 200, copy.deepcopy(self._priced(call))
        if sid is not None and request.method == "POST":
            return self._update_call(request, sid)
        return 405, error_body(405, 20004, "Method not allowed")

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (self.account_sid, self.auth_token)

    def _create_call(self, request: RecordedRequest) -> tuple[int, Any]:
        form = request.form
        for name in ("To", "From"):
            if not form.get(name):
                return 400, error_body(400, 21201, f"No '{name}' number is specified")
        if not any(form.get(name) for name in ("Url", "Twiml", "ApplicationSid")):
            return 400, error_body(400, 21205, "Url, Twiml or ApplicationSid is required")
        sid = "CA" + uuid.uuid4().hex
        with self._lock:
            call = self._new_call(sid=sid, to=form["To"][0], from_=form["From"][0])
            self._calls[sid] = call
            if self._lost_creations:
                status = self._lost_creations.pop(0)
                return status, error_body(status, DEFAULT_CODES.get(status), "Bad gateway")
            return 201, copy.deepcopy(call)

    def _list_calls(self, request: RecordedRequest) -> tuple[int, Any]:
        """Twilio's Calls list: newest first, filtered by To and From, one page."""
        query = {name: values[0] for name, values in request.query.items()}
        page_size = int(query.get("PageSize", "50"))
        with self._lock:
            calls = [
                copy.deepcopy(self._priced(call))
                for call in reversed(self._calls.values())
                if call["to"] == query.get("To", call["to"])
                and call["from"] == query.get("From", call["from"])
            ][:page_size]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls.json?PageSize={page_size}&Page=0"
        return 200, {
            "calls": calls,
            "end": max(0, len(calls) - 1),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def _list_page(self, request: RecordedRequest, name: str) -> tuple[int, Any]:
        """One page of an account list, as Twilio pages them (the spec's list responses
        and their examples): `PageSize` records (50 unless asked, at most 1000) after the
        record `PageToken` names; `next_page_uri` names the next page's `Page` and a
        `PageToken` of "PA" and the page's last SID, `previous_page_uri` one of "PB" and
        its first, and is null on the last page."""
        query = {key: values[0] for key, values in request.query.items()}
        size = min(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
        number = int(query.get("Page", "0"))
        token = query.get("PageToken", "")
        with self._lock:
            records = copy.deepcopy(list(self._lists[name].values()))
        sids = [record["sid"] for record in records]
        start = sids.index(token[2:]) + 1 if token.startswith("PA") and token[2:] in sids else 0
        page = records[start : start + size]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/{name}.json?PageSize={size}"
        more = start + size < len(records)
        return 200, {
            "end": max(start, start + len(page) - 1),
            "first_page_uri": f"{base}&Page=0",
            LISTS[name]: page,
            "next_page_uri": (
                f"{base}&Page={number + 1}&PageToken=PA{page[-1]['sid']}" if more else None
            ),
            "page": number,
            "page_size": size,
            "previous_page_uri": (
                f"{base}&Page={number - 1}&PageToken=PB{page[0]['sid']}"
                if number and page
                else None
            ),
            "start": start,
            "uri": f"{base}&Page={number}" + (f"&PageToken={token}" if token else ""),
        }

    def _number(self, request: RecordedRequest, sid: str) -> tuple[int, Any]:
        """One of the account's numbers: fetched, or updated with the parameters of
        NUMBER_FIELDS (an empty value clears its field, as Twilio takes "" for none); an
        unknown SID is 20404 like any resource."""
        with self._lock:
            number = self._lists["IncomingPhoneNumbers"].get(sid)
            if number is None:
                return _not_found(request.path)
            if request.method == "POST":
                for name, field in NUMBER_FIELDS.items():
                    if name in request.form:
                        number[field] = request.form[name][0] or None
                number["date_updated"] = self._now()
            elif request.method != "GET":
                return 405, error_body(405, 20004, "Method not allowed")
            return 200, copy.deepcopy(number)

    def _recording(self, request: RecordedRequest, sid: str) -> tuple[int, Any]:
        """A Recording resource fetched, or deleted: 204 with no body, after which it is
        404 (20404) like any unknown resource
        (https://www.twilio.com/docs/voice/api/recording#delete-a-recording-resource)."""
        with self._lock:
            recording = self._recordings.get(sid)
            if recording is None:
                return _not_found(request.path)
            if request.method == "DELETE":
                del self._recordings[sid]
                self._media.pop(sid, None)
                return 204, None
            if request.method != "GET":
                return 405, error_body(405, 20004, "Method not allowed")
            return 200, copy.deepcopy(recording)

    def _recording_media(self, request: RecordedRequest, match: re.Match[str]) -> Response | None:
        """A recording's audio in the format its extension names; None (answered as
        the resource's 404) when it has none. HTTP Basic auth is asked for, as when the
        account enforces it for media
        (https://www.twilio.com/docs/voice/api/recording#fetch-a-recording-media-file)."""
        if not self._authorized(request.headers.get("authorization", "")):
            return json_response(401, error_body(401, 20003, "Authenticate"))
        if match["account"] != self.account_sid:
            return None
        with self._lock:
            audio = self._media.get(match["sid"])
        if audio is None:
            return None
        return 200, {"Content-Type": MEDIA_TYPES[match["extension"]]}, audio

    def _start_recording(self, request: RecordedRequest, call_sid: str) -> tuple[int, Any]:
        """Start recording a live call: 201 with the new recording, in progress. Twilio
        refuses a call that is not in progress with 21220
        (https://www.twilio.com/docs/api/errors/21220, "Invalid call state"; the
        "Create a Recording resource" section of the Recording docs)."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None:
                return _not_found(request.path)
            if call["status"] != "in-progress":
                return 400, error_body(
                    400, 21220, "Call is not in-progress. Cannot create recording."
                )
            record = self._new_recording(call_sid, status="in-progress", duration=None)
            self._recordings[record["sid"]] = record
            self._media[record["sid"]] = b"ID3" + record["sid"].encode()
            started = {
                name: record[name]
                for name in (
                    "account_sid",
                    "api_version",
                    "call_sid",
                    "conference_sid",
                    "channels",
                    "date_created",
                    "date_updated",
                    "start_time",
                    "price",
                    "price_unit",
                    "duration",
                    "sid",
                    "source",
                    "status",
                    "error_code",
                    "encryption_details",
                )
            }
            started["track"] = "both"
            started["uri"] = (
                f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call_sid}/Recordings/"
                f"{record['sid']}.json"
            )
            return 201, started

    def _new_recording(self, call_sid: str, *, status: str, duration: str | None) -> dict[str, Any]:
        """A Recording resource as the spec's FetchRecording example shows one."""
        sid = "RE" + uuid.uuid4().hex
        now = self._now()
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": call_sid,
            "conference_sid": None,
            "channels": 1,
            "date_created": now,
            "date_updated": now,
            "start_time": now,
            "price": None,
            "price_unit": "USD",
            "duration": duration,
            "sid": sid,
            "source": "StartCallRecordingAPI",
            "status": status,
            "error_code": None,
            "uri": f"{uri}.json",
            "encryption_details": None,
            "subresource_uris": {
                "add_on_results": f"{uri}/AddOnResults.json",
                "transcriptions": f"{uri}/Transcriptions.json",
            },
            "media_url": f"https://api.twilio.com{uri}",
        }

    def _account(self) -> dict[str, Any]:
        """The Account resource as Twilio's API shows it (the spec's FetchAccount example)."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}"
        now = self._now()
        return {
            "auth_token": self.auth_token,
            "date_created": now,
            "date_updated": now,
            "friendly_name": self.account_name,
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.account_status,
            "subresource_uris": {
                "calls": f"{uri}/Calls.json",
                "incoming_phone_numbers": f"{uri}/IncomingPhoneNumbers.json",
                "outgoing_caller_ids": f"{uri}/OutgoingCallerIds.json",
            },
            "type": self.account_type,
            "uri": f"{uri}.json",
        }

    def _new_number(self, phone_number: str) -> dict[str, Any]:
        """An IncomingPhoneNumber as Twilio's API lists it (the spec's example): a local
        number with voice, not yet pointed at any URL."""
        sid = "PN" + uuid.uuid4().hex
        now = self._now()
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False},
            "date_created": now,
            "date_updated": now,
            "emergency_status": "Inactive",
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "friendly_name": phone_number,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": phone_number,
            "sid": sid,
            # The spec's example has "" here, which its own SID pattern refuses: null.
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status_callback": "",
            "status_callback_method": "POST",
            "trunk_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_url": None,
            "bundle_sid": None,
            "voice_receive_mode": "voice",
            "status": "in-use",
            "type": "local",
        }

    def _new_caller_id(self, phone_number: str) -> dict[str, Any]:
        """An OutgoingCallerId as Twilio's API lists it (the spec's example)."""
        sid = "PN" + uuid.uuid4().hex
        now = self._now()
        return {
            "account_sid": self.account_sid,
            "date_created": now,
            "date_updated": now,
            "friendly_name": phone_number,
            "phone_number": phone_number,
            "sid": sid,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/OutgoingCallerIds/{sid}.json",
        }

    def _update_call(self, request: RecordedRequest, sid: str) -> tuple[int, Any]:
        with self._lock:
            call = self._calls.get(sid)
            if call is None:
                return _not_found(request.path)
            status = request.form.get("Status", [None])[0]
            redirect = request.form.get("Url") or request.form.get("Twiml")
            if redirect and call["status"] in ENDED_STATUSES:
                return 400, error_body(400, 21220, "Call is not in-progress. Cannot redirect.")
            if status and call["status"] not in ENDED_STATUSES:
                if status == "completed" or call["status"] in ("queued", "ringing"):
                    call.update(status=status, end_time=self._now())
            call["date_updated"] = self._now()
            return 200, copy.deepcopy(self._priced(call))

    def _priced(self, call: dict[str, Any]) -> dict[str, Any]:
        """`call`, priced once `price_delay` has passed since its end (called locked).

        Twilio bills a completed call per started minute of its duration and writes the
        price negative with five decimals ("-0.01300"); busy, no-answer, failed and
        canceled calls are not charged (support.twilio.com/hc/en-us/articles/223132547).
        """
        if call["price"] is not None or call["status"] != "completed" or not call["end_time"]:
            return call
        ended = email.utils.parsedate_to_datetime(call["end_time"])
        if self.clock() < ended + self.price_delay:
            return call
        minutes = max(1, math.ceil(int(call["duration"] or 0) / 60))
        call["price"] = f"{-(self.price_per_minute * minutes):.5f}"
        return call

    def _now(self) -> str:
        """The fake's clock as Twilio writes times (RFC 2822)."""
        return email.utils.format_datetime(self.clock())

    def _new_call(self, *, sid: str, to: str, from_: str) -> dict[str, Any]:
        """A Call resource as Twilio's API shows it right after creation."""
        now = self._now()
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        return {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in (
                    "notifications",
                    "recordings",
                    "payments",
                    "events",
                    "siprec",
                    "streams",
                    "transcriptions",
                    "user_defined_message_subscriptions",
                    "user_defined_messages",
                )
            },
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }

    def _check_answer(self, request: RecordedRequest, status: int, body: Any) -> None:
        if self.spec is None:
            return
        problems = self.spec.check_response(
            method=request.method, path=request.path, status=status, body=body
        )
        with self._lock:
            self._violations.extend(f"fake's answer: {problem}" for problem in problems)


def error_body(status: int, code: int | None, message: str) -> dict[str, Any]:
    """Twilio's JSON error shape."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else "",
        "status": status,
    }


def _is_media(path: str) -> bool:
    match = RECORDING_PATH.fullmatch(path)
    return match is not None and match["extension"] != ".json"


def _not_found(path: str) -> tuple[int, Any]:
    return 404, error_body(404, 20404, f"The requested resource {path} was not found")
