"""The conversation transport seam: the flow says everything through the call's
transport, and the <Gather> transport answers the TwiML turns Twilio expects."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest

from calls import flow, transports
from calls.models import Call, Turn
from calls.transports.gather import GATHER
from campaigns.models import Contact
from voices.clips import Speech

pytestmark = pytest.mark.django_db

APP_URL = "https://calls.example.com"
SID = "CA" + "b" * 32
HOLA = Speech(text="Hola.", language="es-ES")


class RecordingTransport:
    """A transport that answers with the name of what it was asked to do."""

    speaks_text = False

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def _answer(self, what: str, lines: Sequence[Speech]) -> str:
        self.asked.append((what, [line.text for line in lines]))
        return what

    def listen(self, call: Call, lines: Sequence[Speech]) -> str:
        return self._answer("listen", lines)

    def hang_up(self, lines: Sequence[Speech] = ()) -> str:
        return self._answer("hang_up", lines)

    def hold(self, call: Call, lines: Sequence[Speech]) -> str:
        return self._answer("hold", lines)

    def begin_reply(self, call: Call, first: Speech, *, token: str) -> str:
        return self._answer("begin_reply", [first])

    def keep_waiting(self, call_id: int, *, token: str) -> str:
        return self._answer("keep_waiting", [])

    def transfer(
        self, call: Call, lines: Sequence[Speech], *, number: str, caller_id: str, timeout: int
    ) -> str:
        return self._answer("transfer", lines)

    def apologise(self, call_id: int, lines: Sequence[Speech], *, goodbye: Speech) -> str:
        return self._answer("apologise", [*lines, goodbye])


@pytest.fixture(autouse=True)
def _call_settings(settings) -> None:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"


@pytest.fixture
def live_call(campaign) -> Call:
    contact = Contact.objects.create(
        campaign=campaign,
        phone="+34600000001",
        variables={"first_name": "Ana"},
        state=Contact.State.CALLING,
        attempts=1,
    )
    return Call.objects.create(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=SID,
        from_number="+34910000000",
        to_number=contact.phone,
    )


@pytest.fixture
def recording(monkeypatch) -> RecordingTransport:
    transport = RecordingTransport()
    monkeypatch.setattr(transports, "transport_for", lambda call=None: transport)
    return transport


def test_the_flow_says_everything_through_the_calls_transport(
    live_call, recording, settings
) -> None:
    # given a call answered through a transport that is not <Gather>
    params = {"CallSid": SID}
    assert flow.answer(call_id=live_call.pk, params=params) == "listen"
    # when the caller stays silent, then asks not to be called again
    silent = flow.prepare_turn(call_id=live_call.pk, params=params, silence=True)
    opted_out = flow.prepare_turn(
        call_id=live_call.pk, params={**params, "Digits": settings.OPT_OUT_DIGIT}
    )
    apology = flow.fallback(call_id=live_call.pk, params=params)
    # then every answer is the transport's, with the lines the flow recorded
    assert (silent, opted_out, apology) == ("listen", "hang_up", "apologise")
    agent_lines = list(
        live_call.turns.filter(role=Turn.Role.AGENT).order_by("sequence").values_list("text")
    )
    assert [what for what, _lines in recording.asked] == [
        "listen",
        "listen",
        "hang_up",
        "apologise",
    ]
    assert [" ".join(lines) for _what, lines in recording.asked[:3]] == [
        text for (text,) in agent_lines
    ]


def verbs(twiml: str) -> list[ET.Element]:
    return list(ET.fromstring(twiml))  # noqa: S314  (our own TwiML)


def test_gather_listens_at_the_turn_webhook_and_asks_again_on_silence(live_call) -> None:
    [gather, silence] = verbs(GATHER.listen(live_call, [HOLA]))
    turn = f"{APP_URL}/twilio/calls/{live_call.pk}/turn"
    assert gather.tag == "Gather" and gather.get("action") == turn
    assert [say.text for say in gather] == ["Hola."]
    assert (silence.tag, silence.text) == ("Redirect", turn + "?silence=1")


def test_gather_begins_a_reply_that_can_be_spoken_over_then_continues(live_call) -> None:
    [gather, rest] = verbs(GATHER.begin_reply(live_call, HOLA, token="abc"))
    base = f"{APP_URL}/twilio/calls/{live_call.pk}"
    assert gather.tag == "Gather" and gather.get("action") == base + "/turn?reply=abc"
    assert (rest.tag, rest.text) == ("Redirect", base + "/continue?reply=abc")
    [pause, again] = verbs(GATHER.keep_waiting(live_call.pk, token="abc"))
    assert pause.tag == "Pause" and again.text == base + "/continue?reply=abc"


def test_gather_holds_then_asks_the_turn_again_as_a_retry(live_call) -> None:
    [say, retry] = verbs(GATHER.hold(live_call, [HOLA]))
    assert say.text == "Hola."
    assert retry.text == f"{APP_URL}/twilio/calls/{live_call.pk}/turn?retry=1"


def test_gather_transfers_to_the_number_and_hears_how_it_ended(live_call) -> None:
    twiml = GATHER.transfer(live_call, [HOLA], number="+34910000999", caller_id="", timeout=20)
    [say, dial] = verbs(twiml)
    assert say.text == "Hola." and dial.text == "+34910000999"
    assert dial.get("action") == f"{APP_URL}/twilio/calls/{live_call.pk}/transfer-ended"
    assert dial.get("timeout") == "20"


def test_gather_hangs_up_after_its_lines() -> None:
    assert [verb.tag for verb in verbs(GATHER.hang_up([HOLA]))] == ["Say", "Hangup"]
