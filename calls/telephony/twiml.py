"""TwiML, the documents that tell the carrier what a call does next.

Both carriers read it (the sandbox plays the same verbs), so it is written once here, with
the SDK's builder as the Twilio backend provides it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from django.conf import settings

from calls.telephony.twilio import Gather, VoiceResponse


class Spoken(Protocol):
    """A line to speak: <Play> `url` when set, else <Say> `text` in `language` (read-only,
    so that a frozen dataclass such as voices.clips.Speech is one)."""

    @property
    def text(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def url(self) -> str: ...


def _speak(verb: VoiceResponse | Gather, line: Spoken) -> None:
    if line.url:
        verb.play(line.url)
    elif line.text:
        # Twilio's <Say> defaults to en-US: the language is always given, and the voice
        # for it (TWILIO_SAY_VOICES) where one is named.
        voice = settings.TWILIO_SAY_VOICES.get(line.language)
        verb.say(line.text, language=line.language, **({"voice": voice} if voice else {}))


def gather_twiml(
    *,
    lines: Iterable[Spoken],
    action: str,
    language: str,
    no_input_url: str,
    timeout: int = 5,
    hints: str = "",
) -> str:
    """Speak `lines` while listening (speech or keys), post the answer to `action`; with
    no answer, Twilio goes on to the <Redirect> to `no_input_url`.

    The speech language is always set (Twilio's default is en-US). `speechTimeout=auto`
    needs a speech model other than `default` (warning 13335), hence `phone_call`.
    """
    response = VoiceResponse()
    gather = response.gather(
        input="speech dtmf",
        action=action,
        method="POST",
        language=language,
        timeout=timeout,
        speech_timeout="auto",
        speech_model="phone_call",
        num_digits=1,
        action_on_empty_result=False,
        **({"hints": hints} if hints else {}),
    )
    for line in lines:
        _speak(gather, line)
    response.redirect(no_input_url, method="POST")
    return str(response)


def hang_up_twiml(*, lines: Iterable[Spoken] = ()) -> str:
    """Speak `lines`, then end the call."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.hangup()
    return str(response)


def transfer_twiml(
    *, lines: Iterable[Spoken], number: str, caller_id: str, timeout: int, action: str
) -> str:
    """Speak `lines`, then connect the callee to `number`; `action` hears how it went."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.dial(
        number, caller_id=caller_id or None, timeout=timeout, action=action, method="POST"
    )
    return str(response)


def fallback_twiml(*, lines: Iterable[Spoken], action: str, goodbye: Spoken) -> str:
    """Speak `lines` while waiting for one key (posted to `action`); with none, speak
    `goodbye` and end the call."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, timeout=5, action=action, method="POST")
    for line in lines:
        _speak(gather, line)
    _speak(response, goodbye)
    response.hangup()
    return str(response)


def message_twiml(
    *,
    lines: Iterable[Spoken],
    goodbye: Iterable[Spoken],
    opt_out_action: str = "",
    transfer_lines: Iterable[Spoken] = (),
    transfer_to: str = "",
    caller_id: str = "",
    timeout: int = 30,
) -> str:
    """A short message to someone who rang us: speak `lines`, listening meanwhile for one
    key posted to `opt_out_action` (when given); then, with `transfer_to`, speak
    `transfer_lines` and put them through to it (TwiML goes on after the <Dial> once it
    ends); last speak `goodbye` and end the call."""
    response = VoiceResponse()
    if opt_out_action:
        gather = response.gather(
            input="dtmf", num_digits=1, timeout=5, action=opt_out_action, method="POST"
        )
        for line in lines:
            _speak(gather, line)
    else:
        for line in lines:
            _speak(response, line)
    if transfer_to:
        for line in transfer_lines:
            _speak(response, line)
        response.dial(transfer_to, caller_id=caller_id or None, timeout=timeout)
    for line in goodbye:
        _speak(response, line)
    response.hangup()
    return str(response)


def hold_twiml(*, lines: Iterable[Spoken], retry_url: str) -> str:
    """Speak `lines` (a holding line), then fetch `retry_url` for what comes next."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.redirect(retry_url, method="POST")
    return str(response)


def interruptible_twiml(
    *, lines: Iterable[Spoken], action: str, language: str, next_url: str
) -> str:
    """Speak `lines` (the start of a reply) while listening, so that the callee can speak
    over them (their words are posted to `action`), then fetch `next_url` for the rest.

    The <Gather> waits one second after the lines (its `timeout` takes whole seconds,
    one the least) for the callee to start speaking; nothing heard, Twilio goes on to
    the <Redirect>.
    """
    response = VoiceResponse()
    gather = response.gather(
        input="speech dtmf",
        action=action,
        method="POST",
        language=language,
        timeout=1,
        speech_timeout="auto",
        speech_model="phone_call",
        num_digits=1,
        action_on_empty_result=False,
    )
    for line in lines:
        _speak(gather, line)
    response.redirect(next_url, method="POST")
    return str(response)


def pause_twiml(*, seconds: int, next_url: str) -> str:
    """Keep the line open `seconds` in silence, then fetch `next_url`."""
    response = VoiceResponse()
    response.pause(length=seconds)
    response.redirect(next_url, method="POST")
    return str(response)


def relay_twiml(
    *,
    url: str,
    action: str,
    language: str,
    voice: str,
    tts_provider: str,
    welcome_greeting: str,
    hints: str = "",
    other_languages: Iterable[str] = (),
    parameters: Mapping[str, str] | None = None,
    reconnect: bool = False,
) -> str:
    """Connect the call to our WebSocket at `url` through Twilio's ConversationRelay
    (twilio.com/docs/voice/twiml/connect/conversationrelay): Twilio recognises the
    callee's speech in `language` and speaks our text with `tts_provider`'s `voice`,
    `welcome_greeting` first. The callee may speak over us or press keys (both reach the
    socket). `other_languages` get a <Language> each with the same voice; `parameters`
    reach the socket's `setup` message as customParameters. When the session ends,
    Twilio requests `action` and runs the TwiML it answers. With `reconnect`, Twilio opens
    the socket again when it drops during the call, and replays what it buffered meanwhile
    (applicationReconnect; twilio.com/en-us/changelog/studio-conversationrelay-widget-updates).
    """
    response = VoiceResponse()
    connect = response.connect(action=action, method="POST")
    relay = connect.conversation_relay(
        url=url,
        language=language,
        tts_provider=tts_provider,
        voice=voice or None,
        welcome_greeting=welcome_greeting or None,
        welcome_greeting_interruptible="any",
        interruptible="any",
        dtmf_detection=True,
        # The caller's words as they speak, not only once they finish: the silence timer
        # (calls.relay.session) must not ask whether they are there while they talk.
        partial_prompts=True,
        hints=hints or None,
        application_reconnect=True if reconnect else None,
    )
    for code in other_languages:
        relay.language(code=code, tts_provider=tts_provider, voice=voice or None)
    for name, value in (parameters or {}).items():
        relay.parameter(name=name, value=value)
    return str(response)
