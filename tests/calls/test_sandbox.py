"""The sandbox carrier, played against test webhooks on a live server.

The views below stand in for our Twilio webhooks: each checks the request's signature as
the real ones do (a callback registered with the connection override `#rc=3` is accepted
signed over its URL with or without it), records what it received and answers with the
TwiML a test scripted.
"""

from __future__ import annotations

import datetime
import email.utils
import io
import subprocess
import sys
import threading
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import include, path
from django.utils import timezone, translation
from django.views.decorators.csrf import csrf_exempt

from callcenter.metrics import DIAL_ERRORS
from calls import telephony
from calls.callbacks import PRICE_FIRST_CHECK, record_call_status
from calls.dialing import check_prices
from calls.models import Call
from calls.telephony import TelephonyRejected, sandbox
from calls.telephony.sandbox import carrier, state, views
from campaigns.models import Campaign, Contact, default_sandbox_personas
from tests.factories import CallFactory, CampaignFactory, ContactFactory, PartnerFactory
from tests.processes import ROOT, child_env

pytestmark = pytest.mark.urls(__name__)

TO = "+34600111222"
FROM = "+34910000000"


def sandbox_auth() -> tuple[str, str]:
    """What the platform authenticates with to fetch a sandbox recording."""
    return (sandbox.ACCOUNT_SID, telephony.webhook_auth_token())


@dataclass(frozen=True)
class Received:
    name: str
    method: str
    params: dict[str, str]
    signed: bool
    over_fragment: bool  # signed over the URL with its connection-override fragment


# The hooks `dial` registers with a connection-override fragment, as the dialer does.
FRAGMENTS = {"status": "#rc=3", "amd": "#rc=3", "recording": "#rc=3"}


RECEIVED: list[Received] = []
# What each hook answers: TwiML text, an HTTP status, or a view of its own. Unset: 204.
DOCUMENTS: dict[str, str | int | Callable[[HttpRequest], HttpResponse]] = {}
_lock = threading.Lock()


@csrf_exempt
def hook(request: HttpRequest, name: str) -> HttpResponse:
    url = settings.APP_URL.rstrip("/") + request.get_full_path()
    params = request.POST if request.method == "POST" else {}
    signature = request.headers.get("X-Twilio-Signature")
    plain = telephony.signature_is_valid(url=url, params=params, signature=signature)
    over_fragment = (
        not plain
        and name in FRAGMENTS
        and "?" not in url
        and telephony.signature_is_valid(
            url=url + FRAGMENTS[name], params=params, signature=signature
        )
    )
    signed = plain or over_fragment
    with _lock:
        RECEIVED.append(Received(name, request.method, request.POST.dict(), signed, over_fragment))
    if not signed:
        return HttpResponseForbidden()
    answer = DOCUMENTS.get(name)
    if callable(answer):
        return answer(request)
    if isinstance(answer, int):
        return HttpResponse(status=answer)
    if answer is None:
        return HttpResponse(status=204)
    return HttpResponse(answer, content_type="text/xml")


# Where our numbers send their calls (calls.inbound), named as the real ones are.
INBOUND_HOOKS = [
    path(f"twilio/{url}", hook, {"name": name}, name=name)
    for url, name in [
        ("inbound", "inbound"),
        ("inbound/status", "inbound-status"),
        ("inbound/fallback", "inbound-fallback"),
        ("inbound/opt-out", "inbound-opt-out"),
    ]
]
urlpatterns = [
    path("hooks/<str:name>", hook),
    path("", include((INBOUND_HOOKS, "calls"))),
    *views.urlpatterns,
]


def gather(action: str, *, then: str = "silence", language: str = "es-ES", **attrs: str) -> str:
    """Our answer's shape: a line, a <Gather> posting to `action`, a <Redirect> after it."""
    extra = "".join(f' {name}="{value}"' for name, value in attrs.items())
    return (
        "<Response>"
        f'<Gather input="speech dtmf" action="{action}" method="POST" language="{language}"'
        f' timeout="5" speechTimeout="auto"{extra}>'
        "<Say>Hola, le llamamos de Acme para confirmar su cita.</Say></Gather>"
        f'<Redirect method="POST">{then}</Redirect>'
        "</Response>"
    )


GOODBYE = "<Response><Say>Gracias, adiós.</Say><Hangup/></Response>"


@pytest.fixture
def queued(settings, monkeypatch) -> list[str]:
    """Sandbox mode; the calls create_call queues, kept here instead of sent to Celery."""
    settings.TELEPHONY_BACKEND = "sandbox"
    settings.SANDBOX_SPEED = 1000
    sids: list[str] = []
    monkeypatch.setattr(carrier, "_queue", sids.append)
    return sids


@pytest.fixture
def base(live_server, settings, queued) -> Iterator[str]:
    """The live server's URL, our APP_URL; every request it got must have been signed."""
    settings.APP_URL = live_server.url
    RECEIVED.clear()
    DOCUMENTS.clear()
    yield live_server.url
    assert all(request.signed for request in RECEIVED)


def dial(
    base: str,
    persona: str | None,
    *,
    events: tuple[str, ...] = telephony.STATUS_CALLBACK_EVENTS,
    amd: bool = True,
    record: bool = False,
    timeout: int = 25,
    time_limit: int = 600,
    play: bool = True,
) -> str:
    call = telephony.create_call(
        to=TO,
        from_=FROM,
        url=f"{base}/hooks/answer",
        fallback_url=f"{base}/hooks/fallback",
        status_callback=telephony.url_with_retries(f"{base}/hooks/status"),
        status_callback_events=events,
        machine_detection="DetectMessageEnd" if amd else None,
        async_amd_callback=telephony.url_with_retries(f"{base}/hooks/amd"),
        timeout=timeout,
        time_limit=time_limit,
        record=record,
        recording_status_callback=telephony.url_with_retries(f"{base}/hooks/recording")
        if record
        else None,
        sandbox_persona=persona,
    )
    if play:
        sandbox.run_call(call.sid)
    return call.sid


def received(name: str) -> list[dict[str, str]]:
    return [request.params for request in RECEIVED if request.name == name]


def statuses() -> list[str]:
    return [params["CallStatus"] for params in received("status")]


# --- Calls to our numbers ------------------------------------------------------------------


def test_an_inbound_call_rings_our_numbers_webhooks_as_twilio_does(base) -> None:
    # given: our number answers with a question, then says goodbye
    DOCUMENTS["inbound"] = gather("/hooks/turn")
    DOCUMENTS["turn"] = GOODBYE

    # when someone rings our number FROM, from the number TO
    call = sandbox.place_inbound_call(from_=TO, to=FROM, persona="interested")
    assert call.status == "ringing"
    sandbox.run_call(call.sid)

    # then: the voice URL is asked while the call rings, then the caller talks
    [voice] = received("inbound")
    assert (voice["CallSid"], voice["Direction"], voice["CallStatus"]) == (
        call.sid,
        "inbound",
        "ringing",
    )
    assert (voice["From"], voice["To"], voice["Caller"], voice["Called"]) == (TO, FROM, TO, FROM)
    [turn] = received("turn")
    assert turn["SpeechResult"] == "Sí, allí estaré. Gracias."
    assert (turn["CallStatus"], turn["Direction"]) == ("in-progress", "inbound")
    # and the number's status callback gets the end only, as a number's does
    [final] = received("inbound-status")
    assert (final["CallStatus"], final["Direction"]) == ("completed", "inbound")
    assert int(final["CallDuration"]) > 0
    assert received("status") == [] and received("amd") == []
    assert telephony.fetch_call(sid=call.sid).status == "completed"


def test_an_inbound_call_falls_back_when_our_voice_url_fails(base) -> None:
    DOCUMENTS["inbound"] = 500
    DOCUMENTS["inbound-fallback"] = GOODBYE

    call = sandbox.place_inbound_call(from_=TO, to=FROM, persona="silent")
    sandbox.run_call(call.sid)

    [fallback] = received("inbound-fallback")
    assert fallback["ErrorCode"] == "11200"
    assert received("inbound-status")[-1]["CallStatus"] == "completed"


def test_an_inbound_caller_presses_the_opt_out_digit_when_asked_for_keys(base, settings) -> None:
    DOCUMENTS["inbound"] = (
        '<Response><Gather input="dtmf" numDigits="1" action="/twilio/inbound/opt-out">'
        "<Say>Pulse 9 si no quiere más llamadas.</Say></Gather><Hangup/></Response>"
    )
    DOCUMENTS["inbound-opt-out"] = GOODBYE

    call = sandbox.place_inbound_call(from_=TO, to=FROM, persona="opt_out")
    sandbox.run_call(call.sid)

    [pressed] = received("inbound-opt-out")
    assert pressed["Digits"] == settings.OPT_OUT_DIGIT


@pytest.mark.parametrize(
    ("from_", "to", "persona", "problem"),
    [
        ("612345678", FROM, "interested", "The From number “612345678”"),
        (TO, "", "interested", "The To number “”"),
        (TO, FROM, "voicemail", "The sandbox caller “voicemail” is none of interested"),
        (TO, FROM, "busy", "The sandbox caller “busy”"),
    ],
)
def test_place_inbound_call_refuses_what_cannot_ring(queued, from_, to, persona, problem) -> None:
    with translation.override("en"), pytest.raises(ValueError, match=problem):
        sandbox.place_inbound_call(from_=from_, to=to, persona=persona)
    assert queued == []


@pytest.mark.django_db
def test_call_back_rings_the_campaigns_number_as_the_contacts_caller(queued, settings) -> None:
    settings.TWILIO_PHONE_NUMBER = "+34910000111"
    partner = PartnerFactory(name="Acme", trusted=True)
    campaign = CampaignFactory(partner=partner, name="Spring")
    silent = contact_in(campaign, phone="+34600000001", sandbox_persona="silent")
    busy = contact_in(campaign, phone="+34600000002", sandbox_persona="busy")

    first = sandbox.call_back(contact=silent)
    second = sandbox.call_back(contact=busy)
    third = sandbox.call_back(contact=busy, persona="opt_out", queue=False)

    states = [cache.get(f"sandbox:call:{call.sid}") for call in (first, second, third)]
    assert [state["persona"] for state in states] == ["silent", "interested", "opt_out"]
    assert {state["params"]["To"] for state in states} == {"+34910000111"}
    assert queued == [first.sid, second.sid]
    settings.TWILIO_PHONE_NUMBER = ""
    with pytest.raises(ValueError, match="TWILIO_PHONE_NUMBER"):
        sandbox.call_back(contact=silent)


# --- The REST side ------------------------------------------------------------------------


def test_create_call_returns_a_queued_call_and_queues_its_simulation(queued) -> None:
    call = telephony.create_call(
        to=TO,
        from_=FROM,
        url="http://testserver/answer",
        fallback_url="http://testserver/fallback",
        status_callback="http://testserver/status",
        async_amd_callback="http://testserver/amd",
        timeout=25,
        time_limit=600,
        record=False,
        sandbox_persona="interested",
    )

    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert int(call.sid[2:], 16) >= 0
    assert call.status == "queued"
    assert queued == [call.sid]
    assert telephony.fetch_call(sid=call.sid).status == "queued"


@pytest.mark.parametrize(
    ("to", "from_", "persona", "code"),
    [
        ("600111222", FROM, None, 21211),
        (TO, FROM, "invalid_number", 21211),
        (TO, "0910000000", "interested", 21212),
    ],
)
def test_create_call_rejects_what_twilio_rejects(queued, to, from_, persona, code) -> None:
    errors = DIAL_ERRORS.labels(code=str(code))
    before = errors._value.get()

    with pytest.raises(TelephonyRejected) as caught:
        telephony.create_call(
            to=to,
            from_=from_,
            url="http://testserver/answer",
            fallback_url="http://testserver/fallback",
            status_callback="http://testserver/status",
            async_amd_callback="http://testserver/amd",
            timeout=25,
            time_limit=600,
            record=False,
            sandbox_persona=persona,
        )

    assert caught.value.code == code and caught.value.status == 400
    assert caught.value.reason
    assert errors._value.get() == before + 1
    assert queued == []


def test_find_calls_lists_the_calls_to_a_number_newest_first(queued) -> None:
    def create(from_: str) -> str:
        return telephony.create_call(
            to=TO,
            from_=from_,
            url="http://testserver/answer",
            fallback_url="http://testserver/fallback",
            status_callback="http://testserver/status",
            async_amd_callback="http://testserver/amd",
            timeout=25,
            time_limit=600,
            record=False,
        ).sid

    start = timezone.now()
    first, other, last = create(FROM), create("+34910000009"), create(FROM)

    found = telephony.find_calls(to=TO, from_=FROM, created_after=start)

    assert [call.sid for call in found] == [last, first]
    assert queued == [first, other, last]
    assert telephony.find_calls(to=TO, from_=FROM, created_after=timezone.now()) == []


def test_fetch_call_of_an_unknown_sid_is_rejected(queued) -> None:
    with pytest.raises(TelephonyRejected) as caught:
        telephony.fetch_call(sid="CA" + "0" * 32)

    assert caught.value.status == 404 and caught.value.code == 20404


def test_redirect_of_an_ended_call_is_rejected(base) -> None:
    DOCUMENTS["answer"] = GOODBYE
    sid = dial(base, "interested")

    with pytest.raises(TelephonyRejected) as caught:
        telephony.redirect_call(sid=sid, url=f"{base}/hooks/voicemail")

    assert caught.value.code == 21220


# --- Personas -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "line", "closing"),
    [
        ("interested", "Sí, allí estaré. Gracias.", "Sí, perfecto, gracias."),
        ("not_interested", "No, gracias, no me interesa.", "No, nada más, gracias."),
        ("callback", "Ahora no puedo, llámeme mañana a las diez.", "Sí, mañana a las diez. Adiós."),
        ("opt_out", "No me llame más, bórrenme de su lista.", "Que no me llamen más, por favor."),
    ],
)
def test_run_call_human_says_its_lines_to_each_gather_action(base, persona, line, closing) -> None:
    # given: a greeting that asks, a follow-up that asks again, then a goodbye
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = gather("/hooks/closing")
    DOCUMENTS["closing"] = GOODBYE

    # when
    sid = dial(base, persona)

    # then
    [turn] = received("turn")
    [closed] = received("closing")
    assert turn["SpeechResult"] == line and float(turn["Confidence"]) > 0.5
    assert closed["SpeechResult"] == closing
    assert turn["CallSid"] == sid and turn["CallStatus"] == "in-progress"
    assert turn["Direction"] == "outbound-api" and turn["ApiVersion"] == "2010-04-01"
    assert turn["AccountSid"] == sandbox.ACCOUNT_SID and turn["To"] == TO
    assert turn["From"] == FROM and turn["Called"] == TO and turn["Caller"] == FROM
    assert received("silence") == []
    assert statuses() == ["initiated", "ringing", "in-progress", "completed"]
    assert [s["SequenceNumber"] for s in received("status")] == ["0", "1", "2", "3"]
    [amd] = received("amd")
    assert amd["AnsweredBy"] == "human" and amd["CallSid"] == sid
    assert int(amd["MachineDetectionDuration"]) > 0


def test_run_call_final_status_callback_carries_twilios_fields(base) -> None:
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = GOODBYE

    sid = dial(base, "interested")

    final = received("status")[-1]
    assert final["CallStatus"] == "completed"
    assert int(final["CallDuration"]) > 0 and final["Duration"] == "1"
    assert final["AnsweredBy"] == "human"
    assert final["CallbackSource"] == "call-progress-events"
    assert email.utils.parsedate_to_datetime(final["Timestamp"]).tzinfo is not None
    call = telephony.fetch_call(sid=sid)
    assert call.status == "completed" and call.answered_by == "human"
    assert call.duration == int(final["CallDuration"])


def test_run_call_persona_speaks_english_to_an_english_gather(base) -> None:
    DOCUMENTS["answer"] = gather("turn", language="en-US")
    DOCUMENTS["turn"] = GOODBYE

    dial(base, "interested")

    assert received("turn")[0]["SpeechResult"] == "Yes, I'll be there. Thank you."


@pytest.mark.parametrize(
    ("persona", "key"), [("interested", "1"), ("not_interested", "2"), ("opt_out", "7")]
)
def test_run_call_persona_presses_its_key_when_only_keys_are_heard(
    base, settings, persona, key
) -> None:
    settings.OPT_OUT_DIGIT = "7"
    DOCUMENTS["answer"] = (
        '<Response><Gather input="dtmf" numDigits="1" action="turn"><Say>Pulse 1.</Say>'
        "</Gather><Redirect>silence</Redirect></Response>"
    )
    DOCUMENTS["turn"] = GOODBYE

    dial(base, persona)

    [turn] = received("turn")
    assert turn["Digits"] == key and "SpeechResult" not in turn


def test_run_call_callback_persona_presses_nothing(base) -> None:
    DOCUMENTS["answer"] = '<Response><Gather input="dtmf" action="turn"/></Response>'

    dial(base, "callback")

    assert received("turn") == [] and statuses()[-1] == "completed"


def test_run_call_silent_callee_follows_the_redirect_after_the_gather(base) -> None:
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["silence"] = GOODBYE

    dial(base, "silent")

    assert received("turn") == []
    assert len(received("silence")) == 1
    assert statuses()[-1] == "completed"


def test_run_call_persona_lets_a_reply_go_on_past_its_first_line(base) -> None:
    # The start of a reply, listened to for a second only (calls.flow's first line):
    # the callee lets the agent finish, and answers what follows.
    DOCUMENTS["answer"] = (
        '<Response><Gather input="speech dtmf" action="interrupt" timeout="1">'
        "<Say>Perfecto.</Say></Gather><Redirect>rest</Redirect></Response>"
    )
    DOCUMENTS["rest"] = gather("turn")
    DOCUMENTS["turn"] = GOODBYE

    dial(base, "interested")

    assert received("interrupt") == []
    assert received("turn")[0]["SpeechResult"] == "Sí, allí estaré. Gracias."


def test_run_call_persona_falls_silent_after_its_lines(base) -> None:
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = gather("turn2")
    DOCUMENTS["turn2"] = gather("turn3")
    DOCUMENTS["silence"] = GOODBYE

    dial(base, "interested")

    assert len(received("turn")) == 1 and len(received("turn2")) == 1
    assert received("turn3") == [] and len(received("silence")) == 1


def test_run_call_ends_when_the_document_runs_out_after_a_silent_gather(base) -> None:
    DOCUMENTS["answer"] = '<Response><Gather input="speech" action="turn"/></Response>'

    dial(base, "silent")

    assert received("turn") == []
    assert statuses()[-1] == "completed"


def test_run_call_busy_line_never_rings_nor_answers(base) -> None:
    DOCUMENTS["answer"] = GOODBYE

    sid = dial(base, "busy")

    assert statuses() == ["initiated", "busy"]
    assert received("status")[-1]["CallDuration"] == "0"
    assert received("answer") == [] and received("amd") == []
    assert telephony.fetch_call(sid=sid).status == "busy"


def test_run_call_unanswered_line_rings_until_the_timeout(base) -> None:
    sid = dial(base, "no_answer")

    assert statuses() == ["initiated", "ringing", "no-answer"]
    assert received("status")[-1]["CallDuration"] == "0"
    assert received("answer") == []
    assert telephony.fetch_call(sid=sid).status == "no-answer"


def test_run_call_voicemail_is_not_reached_within_a_short_timeout(base) -> None:
    dial(base, "voicemail", timeout=15)

    assert statuses() == ["initiated", "ringing", "no-answer"]


def test_run_call_sends_only_the_status_events_asked_for(base) -> None:
    DOCUMENTS["answer"] = GOODBYE

    dial(base, "interested", events=("completed",))

    assert statuses() == ["completed"]
    assert received("status")[0]["SequenceNumber"] == "0"


# --- AMD, redirects, hang-ups --------------------------------------------------------------


def test_run_call_voicemail_gets_the_amd_verdict_and_obeys_the_redirect(base) -> None:
    # given: a long greeting, and an AMD hook that sends machines to the voicemail TwiML
    DOCUMENTS["answer"] = (
        "<Response><Say>" + "Hola, le llamamos de Acme. " * 8 + "</Say>"
        '<Gather input="speech" action="turn"/><Redirect>silence</Redirect></Response>'
    )
    DOCUMENTS["voicemail"] = '<Response><Pause length="1"/><Say>Mensaje.</Say><Hangup/></Response>'

    def amd(request: HttpRequest) -> HttpResponse:
        if request.POST["AnsweredBy"].startswith("machine"):
            telephony.redirect_call(sid=request.POST["CallSid"], url=f"{base}/hooks/voicemail")
        return HttpResponse(status=204)

    DOCUMENTS["amd"] = amd

    # when
    sid = dial(base, "voicemail")

    # then
    [verdict] = received("amd")
    assert verdict["AnsweredBy"] in ("machine_end_beep", "machine_end_silence")
    assert int(verdict["MachineDetectionDuration"]) >= 3000
    assert len(received("voicemail")) == 1
    assert received("turn") == [] and received("silence") == []
    assert statuses() == ["initiated", "ringing", "in-progress", "completed"]
    assert received("status")[-1]["AnsweredBy"] == verdict["AnsweredBy"]
    assert telephony.fetch_call(sid=sid).answered_by == verdict["AnsweredBy"]


def test_run_call_hangs_up_when_our_server_hangs_up_through_the_api(base) -> None:
    DOCUMENTS["answer"] = '<Response><Pause length="300"/><Redirect>silence</Redirect></Response>'

    def amd(request: HttpRequest) -> HttpResponse:
        telephony.hang_up(sid=request.POST["CallSid"])
        return HttpResponse(status=204)

    DOCUMENTS["amd"] = amd

    dial(base, "interested")

    assert received("silence") == []
    final = received("status")[-1]
    assert final["CallStatus"] == "completed" and int(final["CallDuration"]) < 10


def test_run_call_hung_up_before_it_starts_is_canceled(base) -> None:
    sid = dial(base, "interested", play=False)

    assert telephony.hang_up(sid=sid).status == "canceled"
    sandbox.run_call(sid)

    assert statuses() == ["canceled"]
    assert received("answer") == []
    assert telephony.fetch_call(sid=sid).status == "canceled"


def test_run_call_ends_the_call_at_its_time_limit(base) -> None:
    DOCUMENTS["answer"] = '<Response><Pause length="600"/></Response>'

    dial(base, "interested", time_limit=60)

    final = received("status")[-1]
    assert final["CallStatus"] == "completed" and final["CallDuration"] == "60"


def test_run_call_plays_a_call_once_however_often_it_runs(base) -> None:
    DOCUMENTS["answer"] = GOODBYE
    sid = dial(base, "interested")
    count = len(RECEIVED)

    sandbox.run_sandbox_call_task(sid)

    assert len(RECEIVED) == count


def test_the_worker_finds_the_sandbox_task_under_its_old_name() -> None:
    # A worker of its own, on the Twilio backend (nothing loads the sandbox for it): the
    # task is registered by Celery's autodiscovery, under the name calls.sandbox gave it,
    # so tasks queued before the move still run (and no CELERY_IMPORTS lists it).
    script = (
        "import django; django.setup()\n"
        "from callcenter.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print(sorted(name for name in app.tasks if 'sandbox' in name))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=child_env(
            CALLCENTER_LOCAL_FAKES="1",  # keeps the credentials below
            TELEPHONY_BACKEND="twilio",
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_AUTH_TOKEN="token",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['calls.sandbox.run_sandbox_call_task']"
    assert sandbox.run_sandbox_call_task.name == "calls.sandbox.run_sandbox_call_task"


# --- Failures and fallbacks ----------------------------------------------------------------


def test_run_call_falls_back_when_the_answer_url_fails(base) -> None:
    DOCUMENTS["answer"] = 500
    DOCUMENTS["fallback"] = GOODBYE

    dial(base, "interested")

    # Twilio retries once by default (no #rc on the answer URL), then falls back.
    assert len(received("answer")) == 2
    [fallback] = received("fallback")
    assert fallback["ErrorCode"] == "11200" and fallback["ErrorUrl"] == f"{base}/hooks/answer"
    assert statuses()[-1] == "completed"


@pytest.mark.parametrize(
    "document",
    ["<Response><Dance/></Response>", "not xml at all", "<Html><Body/></Html>"],
)
def test_run_call_falls_back_when_the_twiml_is_invalid(base, document) -> None:
    DOCUMENTS["answer"] = document
    DOCUMENTS["fallback"] = GOODBYE

    dial(base, "interested")

    assert len(received("answer")) == 1
    assert received("fallback")[0]["ErrorCode"] == "12100"


def test_run_call_ends_when_the_fallback_fails_too(base) -> None:
    DOCUMENTS["answer"] = 404
    DOCUMENTS["fallback"] = 500

    dial(base, "interested")

    assert len(received("fallback")) == 2
    assert statuses()[-1] == "completed"


def test_run_call_falls_back_when_a_gather_action_fails(base) -> None:
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = "<Response><Say>unclosed</Response>"
    DOCUMENTS["fallback"] = GOODBYE

    dial(base, "interested")

    assert received("fallback")[0]["ErrorUrl"] == f"{base}/hooks/turn"


def test_run_call_retries_a_failing_status_callback_as_its_rc_fragment_says(base) -> None:
    DOCUMENTS["answer"] = GOODBYE
    DOCUMENTS["status"] = 503

    dial(base, "interested", events=("completed",))

    # The status URL ends in #rc=3: one try and three retries; the fragment is not sent.
    assert len(received("status")) == 4
    assert {params["SequenceNumber"] for params in received("status")} == {"0"}


def test_run_call_signs_callbacks_with_or_without_their_fragment_by_call(base) -> None:
    # given: calls until both ways were seen (half the SIDs each way, so a handful)
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = GOODBYE
    ways: dict[str, set[bool]] = {}
    for _call in range(64):
        if {True, False} <= {way for seen in ways.values() for way in seen}:
            break
        # when: a call's callbacks (status, AMD, recording) are delivered
        RECEIVED.clear()
        sid = dial(base, "interested", record=True)
        callbacks = [r for r in RECEIVED if r.name in FRAGMENTS]
        assert {r.name for r in callbacks} == {"status", "amd", "recording"}
        ways[sid] = {r.over_fragment for r in callbacks}

    # then: every callback of one call signed the same way, as the SID says; both ways
    # in the run; and every request was accepted (the `base` fixture checks it)
    assert all(seen == {sandbox.signs_fragment(sid)} for sid, seen in ways.items())
    assert {way for seen in ways.values() for way in seen} == {True, False}


# --- Prices --------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The sandbox's real-time clock, moved by the test."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(state, "_clock", lambda: now[0])
    return now


def test_fetch_call_shows_the_price_some_seconds_after_the_end(base, clock) -> None:
    # given: a call answered and ended; no callback carries a price, as with Twilio
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = GOODBYE
    sid = dial(base, "interested")
    assert not {"Price", "PriceUnit", "CallPrice"} & {
        name for params in received("status") for name in params
    }

    # when / then: no price until PRICE_SECONDS (simulated) after the end, then its own
    delay = sandbox.PRICE_SECONDS / settings.SANDBOX_SPEED
    clock[0] += delay * 0.99
    before = telephony.fetch_call(sid=sid)
    clock[0] += delay * 0.01
    after = telephony.fetch_call(sid=sid)

    assert (before.price, before.price_unit) == (None, "USD")
    assert after.duration < 60
    assert (after.price, after.price_unit) == ("-0.01400", "USD")
    assert after.ended_at == datetime.datetime.fromtimestamp(1_800_000_000, datetime.UTC)


@pytest.mark.parametrize(("persona", "status"), [("busy", "busy"), ("no_answer", "no-answer")])
def test_fetch_call_of_a_call_not_charged_never_shows_a_price(base, clock, persona, status) -> None:
    sid = dial(base, persona)

    clock[0] += 86_400

    call = telephony.fetch_call(sid=sid)
    assert (call.status, call.price) == (status, None)


@pytest.mark.parametrize(
    ("status", "duration", "price"),
    [
        ("completed", 0, "-0.01400"),
        ("completed", 60, "-0.01400"),
        ("completed", 61, "-0.02800"),
        ("completed", 600, "-0.14000"),
        ("busy", 0, None),
        ("no-answer", 0, None),
        ("canceled", 0, None),
        ("failed", 0, None),
    ],
)
def test_price_of_charges_completed_calls_per_started_minute(status, duration, price) -> None:
    assert sandbox.price_of(status, duration) == price


def test_the_sandbox_prices_a_call_before_it_is_first_asked_at_the_default_speed() -> None:
    # A few real seconds after the end at the default SANDBOX_SPEED (5, .env.example), and
    # before the price tick first asks: a demo call's price is kept at the first check.
    real_seconds = sandbox.PRICE_SECONDS / 5.0
    assert 2 <= real_seconds < PRICE_FIRST_CHECK.total_seconds()


@pytest.mark.django_db(transaction=True)
def test_the_price_tick_keeps_a_sandbox_calls_price(base, clock, campaign) -> None:
    # given: a sandbox call whose final callback our service folded in
    DOCUMENTS["answer"] = GOODBYE
    sid = dial(base, "interested")
    contact = ContactFactory(campaign=campaign, phone=TO, state=Contact.State.CALLING)
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.DIALING,
        provider_sid=sid,
        from_number=FROM,
        to_number=TO,
        dialed_at=timezone.now() - datetime.timedelta(minutes=1),
    )
    record_call_status(call_id=call.pk, params=received("status")[-1])
    call.refresh_from_db()
    assert (call.price_status, call.price) == (Call.PriceStatus.PENDING, None)

    # when the tick asks, a few seconds after the end
    clock[0] += PRICE_FIRST_CHECK.total_seconds()
    result = check_prices(now=call.price_check_at)

    # then
    assert result.known == [call.pk]
    call.refresh_from_db()
    assert (call.price, call.price_unit, call.price_status) == (
        Decimal("0.014"),
        "USD",
        Call.PriceStatus.KNOWN,
    )


# --- Transfers and recordings --------------------------------------------------------------


def test_run_call_transfer_posts_the_dial_result_to_its_action(base) -> None:
    DOCUMENTS["answer"] = (
        '<Response><Say>Le paso.</Say><Dial action="dialed" timeout="20">+34910000001</Dial>'
        "</Response>"
    )
    DOCUMENTS["dialed"] = "<Response><Hangup/></Response>"

    dial(base, "interested")

    [dialed] = received("dialed")
    assert dialed["DialCallStatus"] == "completed"
    assert int(dialed["DialCallDuration"]) == sandbox.DIAL_TALK_SECONDS
    assert int(received("status")[-1]["CallDuration"]) >= sandbox.DIAL_TALK_SECONDS


def test_run_call_reports_the_recording_after_the_call(base) -> None:
    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = GOODBYE

    dial(base, "interested", record=True)

    [recording] = received("recording")
    final = received("status")[-1]
    assert [r.name for r in RECEIVED][-2:] == ["status", "recording"]
    assert recording["RecordingSid"].startswith("RE") and len(recording["RecordingSid"]) == 34
    assert recording["RecordingStatus"] == "completed"
    assert recording["RecordingDuration"] == final["CallDuration"]
    assert recording["RecordingChannels"] == "1"
    assert recording["RecordingSource"] == "OutboundAPI"
    response = requests.get(recording["RecordingUrl"] + ".wav", auth=sandbox_auth(), timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"] == "audio/x-wav"
    with wave.open(io.BytesIO(response.content)) as audio:
        assert audio.getnchannels() == 1 and audio.getnframes() > 0


def test_run_call_unanswered_call_makes_no_recording(base) -> None:
    dial(base, "busy", record=True)

    assert received("recording") == []


def test_run_call_records_from_a_start_requested_mid_call(base) -> None:
    # given: our turn webhook starts the recording over REST (after the announcement),
    # then talks on for a while and hangs up
    def start_then_talk(request: HttpRequest) -> HttpResponse:
        telephony.start_recording(
            call_sid=request.POST["CallSid"],
            status_callback=telephony.url_with_retries(f"{base}/hooks/recording"),
        )
        return HttpResponse(
            '<Response><Say>Seguimos.</Say><Pause length="10"/><Hangup/></Response>',
            content_type="text/xml",
        )

    DOCUMENTS["answer"] = gather("turn")
    DOCUMENTS["turn"] = start_then_talk

    dial(base, "interested")  # not recorded from the answer

    [recording] = received("recording")
    final = received("status")[-1]
    assert recording["RecordingSource"] == "StartCallRecordingAPI"
    assert recording["RecordingStatus"] == "completed"
    # from the start, not the answer: shorter than the call, at least the pause
    assert 10 <= int(recording["RecordingDuration"]) < int(final["CallDuration"])
    response = requests.get(recording["RecordingUrl"] + ".wav", auth=sandbox_auth(), timeout=5)
    assert response.status_code == 200


def test_recording_view_refuses_an_unknown_recording(base) -> None:
    response = requests.get(
        f"{base}/{sandbox.RECORDINGS_PATH}RE{'0' * 32}", auth=sandbox_auth(), timeout=5
    )

    assert response.status_code == 404


# --- Choosing a persona --------------------------------------------------------------------


def contact_in(campaign: Campaign, *, phone: str = TO, **variables: str) -> Contact:
    return Contact(campaign=campaign, phone=phone, variables=variables)


def test_persona_for_is_the_same_for_the_same_phone_and_attempt() -> None:
    campaign = Campaign()
    contact = contact_in(campaign)

    first = [sandbox.persona_for(contact, campaign, attempt=n) for n in range(1, 30)]
    again = [sandbox.persona_for(contact, campaign, attempt=n) for n in range(1, 30)]

    assert first == again
    assert len(set(first)) > 2
    assert set(first) <= set(default_sandbox_personas())
    assert "invalid_number" not in first  # weight 0 in the default mix


def test_persona_for_follows_the_campaign_mix() -> None:
    campaign = Campaign(sandbox_personas={"busy": 1, "interested": 0})

    chosen = {
        sandbox.persona_for(contact_in(campaign, phone=f"+3460011{n:04d}"), campaign)
        for n in range(40)
    }

    assert chosen == {"busy"}


def test_persona_for_spreads_contacts_by_weight() -> None:
    campaign = Campaign(sandbox_personas={"interested": 3, "voicemail": 1})

    chosen = [
        sandbox.persona_for(contact_in(campaign, phone=f"+3460011{n:04d}"), campaign)
        for n in range(400)
    ]

    assert 240 < chosen.count("interested") < 360
    assert chosen.count("interested") + chosen.count("voicemail") == 400


def test_persona_for_lets_the_contact_variable_win() -> None:
    campaign = Campaign(sandbox_personas={"busy": 1})

    assert sandbox.persona_for(contact_in(campaign, sandbox_persona="opt_out"), campaign) == (
        "opt_out"
    )
    assert sandbox.persona_for(contact_in(campaign, sandbox_persona="pirate"), campaign) == "busy"


def test_persona_for_reads_the_contacts_campaign_when_none_is_given() -> None:
    contact = contact_in(Campaign(sandbox_personas={"no_answer": 2}))

    assert sandbox.persona_for(contact) == "no_answer"


@pytest.mark.parametrize(
    ("mix", "code"),
    [
        ({"pirate": 1}, "invalid_sandbox_persona"),
        ({"interested": -1}, "invalid_sandbox_weight"),
        ({"interested": 1.5}, "invalid_sandbox_weight"),
        ({"interested": True}, "invalid_sandbox_weight"),
        ({"interested": "2"}, "invalid_sandbox_weight"),
        ({"interested": 0, "busy": 0}, "sandbox_personas_all_zero"),
        (["interested"], "invalid_sandbox_personas"),
    ],
)
def test_campaign_clean_refuses_a_bad_persona_mix(mix, code) -> None:
    campaign = Campaign(sandbox_personas=mix)

    with pytest.raises(ValidationError) as caught:
        campaign.clean()

    [problem] = caught.value.error_dict["sandbox_personas"]
    assert problem.code == code


@pytest.mark.parametrize("mix", [{}, {"busy": 1, "invalid_number": 0}, default_sandbox_personas()])
def test_campaign_clean_accepts_a_usable_persona_mix(mix) -> None:
    Campaign(sandbox_personas=mix).clean()
