"""One relay call's conversation over its socket: the caller's words (and keys) are turns
of the same flow as ``<Gather>``'s, the model's reply is sent token by token as it is
written, and what it does to the call (its tools, the call's end) is recorded as for any
other call (``calls.model_turns``).

Words the model answers with nothing for the flow to decide first (no opt-out, the turn
limit not reached: read from the words and the session's memory of the call,
``records.Memory``) go to the model at once, and are written with its reply once it is
streamed; keys, silences and the rest are turns of ``calls.flow.prepare_turn``, after which
the memory is read again.

Messages are handled as they arrive; a turn runs as a task of its own, so that the
caller speaking over a reply (``interrupt``) is heard while the reply is still written.
Turns run one after the other. Every piece of blocking work (the database) runs in the
webhooks' pool of threads, marked as on the relay socket (``transports.on_relay_socket``)
so that the flow answers plans for the socket, not TwiML.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from callcenter.metrics import RELAY_ERRORS, RELAY_FIRST_TOKEN
from calls import conversation, recordings, transports
from calls.flow import prepare_turn
from calls.model_turns import CallerWords, PendingReply
from calls.optout import is_opt_out
from calls.relay import protocol, records
from calls.streaming import in_thread
from calls.transports.relay import Handoff, Plan, Then

logger = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]

# How long a closed socket's turn under way may take to record what was said.
CLOSE_GRACE_SECONDS = 10.0


def on_socket(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``function`` run in the webhooks' threads, as on a relay call's socket."""

    def marked(*args: Any, **kwargs: Any) -> Any:
        with transports.on_relay_socket():
            return function(*args, **kwargs)

    marked.__name__ = getattr(function, "__name__", "relay")
    return in_thread(marked)


class RelaySession:
    """The conversation of call ``call_id`` over its socket; ``send`` sends a frame."""

    def __init__(
        self,
        call_id: int,
        send: Send,
        *,
        call_sid: str = "",
        memory: records.Memory | None = None,
    ) -> None:
        self.call_id = call_id
        # What is kept of the call between turns (None: read again before the next).
        self.memory = memory
        self._send = send
        self.call_sid = call_sid
        self.ended = False  # an `end` was sent, or decided: nothing more is said
        self.closed = False  # the socket closed: nothing can be sent
        self._turns = asyncio.Lock()  # one turn at a time, in the order they came
        self._tasks: set[asyncio.Task[None]] = set()
        self._reply: _Reply | None = None  # the model's reply being written or recorded
        self._silence: asyncio.TimerHandle | None = None
        self._recording_asked = False

    async def send(self, frame: str) -> None:
        """Send ``frame``, unless the socket closed (what is under way still records)."""
        if self.closed:
            return
        try:
            await self._send(frame)
        except Exception:  # noqa: BLE001  # whatever the server raises, the socket is gone
            logger.info("Call %s: the relay socket closed while sending.", self.call_id)
            self.closed = True

    # --- Twilio's messages ------------------------------------------------------------

    async def handle(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Prompt):
            if not message.last:  # partial prompts (partialPrompts) are not turns,
                self._cancel_silence_timer()  # but the caller is speaking
                return
            self._after_greeting()
            words = " ".join(message.words.split())
            if self._answers_at_once(words):
                self._cancel_silence_timer()
                self._spawn(self._model_turn(words, received=time.monotonic()))
            else:
                self._start_turn({"SpeechResult": words}, received=time.monotonic())
        elif isinstance(message, protocol.Dtmf):
            self._after_greeting()
            self._start_turn({"Digits": message.digit}, received=time.monotonic())
        elif isinstance(message, protocol.Interrupt):
            await self._interrupted(message)
        elif isinstance(message, protocol.Error):
            RELAY_ERRORS.labels(kind="twilio").inc()
            logger.warning(
                "Call %s: ConversationRelay error: %s", self.call_id, message.description
            )
        # setup is the consumer's (it opens the session); info is Twilio's debugging.

    def _after_greeting(self) -> None:
        """The welcome greeting (which carries the recording's announcement) has been
        played: the callee answered it, or stayed silent after it. A recording campaign
        starts recording now, once per session, beside the turn
        (calls.recordings.start_after_announcement, which never raises for the carrier)."""
        if self._recording_asked or self.closed:
            return
        self._recording_asked = True
        start = on_socket(recordings.start_after_announcement)
        task = asyncio.ensure_future(_quietly(start(call_id=self.call_id)))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _start_turn(
        self, params: dict[str, str], *, received: float, silence: bool = False
    ) -> None:
        self._cancel_silence_timer()
        if self.ended or self.closed:
            return
        params = {**params, "CallSid": self.call_sid}
        self._spawn(self._turn(params, received=received, silence=silence))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._or_fail(work))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _or_fail(self, work: Awaitable[None]) -> None:
        """``work``, or, when it fails, the session's end: left alone the caller would
        hear silence for good (no line, no silence timer). The <Connect> action then
        apologises and hangs up (``Handoff.FAILED``)."""
        try:
            await work
        except Exception:
            logger.exception("Call %s: relay turn failed; ending the session.", self.call_id)
            if not self.ended and not self.closed:  # a closed socket is the action's
                await _quietly(self.end(Handoff.FAILED))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)

    async def close(self, *, dropped: bool) -> None:
        """The socket closed (``dropped``: abnormally, the call still ours to end): stop
        the reply being written, let what is under way be recorded, keep what was said."""
        self.closed = True
        self._cancel_silence_timer()
        reply = self._reply
        if reply is not None:
            reply.cut(heard=None)
        if self._tasks:
            # What is under way finishes its writes (nothing more is sent): bounded, as a
            # stuck database must not keep a closed socket's consumer forever.
            await asyncio.wait(list(self._tasks), timeout=CLOSE_GRACE_SECONDS)
        if dropped and not self.ended:
            RELAY_ERRORS.labels(kind="dropped").inc()
            await on_socket(records.socket_dropped)(self.call_id)

    # --- Turns ------------------------------------------------------------------------

    async def _turn(self, params: dict[str, str], *, received: float, silence: bool) -> None:
        async with self._turns:
            await self._flow_turn(params, received=received, silence=silence)

    async def _flow_turn(self, params: dict[str, str], *, received: float, silence: bool) -> None:
        """A turn the flow decides (``prepare_turn``), the turns' lock held."""
        if self.ended:
            return
        loop = asyncio.get_running_loop()
        started: list[tuple[_Reply, concurrent.futures.Future[Plan | None]]] = []

        def start(pending: PendingReply) -> None:
            # In prepare_turn's thread: the model is asked while the turn is written.
            reply = _Reply(self, pending, received=received)
            self._reply = reply
            started.append((reply, asyncio.run_coroutine_threadsafe(reply.run(), loop)))

        try:
            step = await on_socket(prepare_turn)(
                call_id=self.call_id, params=params, silence=silence, on_model_turn=start
            )
        except BaseException:
            for _reply, future in started:  # the turn was not recorded: nor is its reply
                future.cancel()
            raise
        if self.memory is not None:  # the flow wrote the turn: read it again
            self.memory.next_sequence = None
        if isinstance(step, str):
            await self._carry_out(Plan.from_answer(step), received=received)
            return
        [(reply, future)] = started
        plan = await asyncio.wrap_future(future)
        if plan is not None:
            await self._carry_out(plan, received=None, streamed=reply.still_heard)

    def _answers_at_once(self, words: str) -> bool:
        """Whether the model answers ``words`` with nothing to decide first: the flow's
        own decisions (an opt-out, the turn limit) are read from the words and the
        session's memory, so the model is asked as the words arrive, before anything is
        written."""
        memory = self.memory
        if memory is None or not words or self.ended or self.closed:
            return False
        if memory.agent_turns >= settings.CALL_MAX_TURNS:
            return False
        template = memory.call.campaign.template
        language = template.language if template is not None else "es-ES"
        return not is_opt_out(speech=words, opt_out_digit=settings.OPT_OUT_DIGIT, language=language)

    async def _model_turn(self, words: str, *, received: float) -> None:
        """The model answers the caller's ``words`` at once (``_answers_at_once``); the
        words and the reply are written together once the reply is streamed."""
        async with self._turns:
            if self.ended:
                return
            memory = self.memory
            assert memory is not None  # _answers_at_once
            if memory.next_sequence is None:  # the flow decided a turn: read it again
                memory = self.memory = await on_socket(records.recall_again)(memory)
            if memory.next_sequence is None or memory.agent_turns >= settings.CALL_MAX_TURNS:
                params = {"SpeechResult": words, "CallSid": self.call_sid}
                await self._flow_turn(params, received=received, silence=False)
                return
            caller = CallerWords(words=words, sequence=memory.next_sequence)
            reply = _Reply(self, memory.pending(words), received=received, caller=caller)
            self._reply = reply
            plan = await reply.run()
            if plan is not None:
                await self._carry_out(plan, received=None, streamed=reply.still_heard)

    async def _carry_out(self, plan: Plan, *, received: float | None, streamed: str = "") -> None:
        """Send ``plan``'s lines (``received``: the caller's words this answers, for the
        turn's response time), then listen, retry the model, or end the session.
        ``streamed``: the reply just streamed, which the caller hears before the lines
        (our `end`, and their silence, wait for it as for the lines)."""
        heard_after = " ".join(part for part in (streamed, *plan.lines) if part)
        if plan.lines:
            await self.say(" ".join(plan.lines), interruptible=plan.interruptible)
            if received is not None:
                waited = time.monotonic() - received
                RELAY_FIRST_TOKEN.observe(waited)
                await on_socket(records.answered_in)(self.call_id, round(waited * 1000))
        if plan.then == Then.RETRY:
            pending = await on_socket(records.retry)(self.call_id, self.call_sid)
            if pending is None:
                await self.end(Handoff.HANG_UP, after=heard_after)
                return
            reply = _Reply(self, pending, received=None)
            self._reply = reply
            next_plan = await reply.run()
            if next_plan is not None:
                await self._carry_out(next_plan, received=None, streamed=reply.still_heard)
        elif plan.then == Then.END:
            await self.end(plan.handoff or Handoff.HANG_UP, after=heard_after)
        elif not self.closed:
            self.arm_silence_timer(after=heard_after)

    async def say(self, words: str, *, interruptible: bool = True) -> None:
        if words:
            await self.send(protocol.text(words, last=True, interruptible=interruptible))

    async def end(self, handoff: Handoff, *, after: str = "") -> None:
        """End the session once ``after`` (just sent) has been heard: Twilio ends it on
        `end` at once, cutting off what it has not said yet. (From the last word sent:
        a streamed reply started earlier, so this errs towards a moment's silence.)"""
        self.ended = True
        per_second = settings.RELAY_SPEECH_CHARS_PER_SECOND
        if after and per_second:
            await asyncio.sleep(len(after) / per_second)
        await self.send(protocol.end({"reason": handoff.value}))

    # --- Interruptions ----------------------------------------------------------------

    async def _interrupted(self, message: protocol.Interrupt) -> None:
        """The caller spoke over us, having heard ``message.heard`` of our line: the
        transcript keeps that much, and the model's next turn is told only that (its
        history is the transcript). Their words follow as a prompt."""
        self._cancel_silence_timer()
        reply = self._reply
        if reply is not None and not reply.finished:
            reply.cut(heard=message.heard)
            return
        await on_socket(records.cut_last_line)(self.call_id, message.heard)
        if self.memory is not None:
            self.memory.cut(message.heard)

    # --- Silence ----------------------------------------------------------------------

    def arm_silence_timer(self, *, after: str) -> None:
        """Ask whether the caller is still there if they say nothing for
        RELAY_SILENCE_SECONDS once ``after`` has been heard (as <Gather>'s timeout)."""
        self._cancel_silence_timer()
        per_second = settings.RELAY_SPEECH_CHARS_PER_SECOND
        speaking = len(after) / per_second if per_second else 0.0
        self._silence = asyncio.get_running_loop().call_later(
            speaking + settings.RELAY_SILENCE_SECONDS, self._silent
        )

    def _silent(self) -> None:
        self._silence = None
        self._after_greeting()
        self._start_turn({}, received=time.monotonic(), silence=True)

    def _cancel_silence_timer(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None


class _Reply:
    """The model's reply to one turn, streamed to the socket as it is written, then
    recorded with what it did (its plan is what the session does next)."""

    def __init__(
        self,
        session: RelaySession,
        pending: PendingReply,
        *,
        received: float | None,
        caller: CallerWords | None = None,
    ):
        self.session = session
        self.pending = pending
        self.received = received
        # The caller's words it answers, written with it (else the flow wrote them).
        self.caller = caller
        self.sent: list[str] = []
        self.first_sent: float | None = None
        self.streaming = True
        self.finished = False
        self.heard: str | None = None  # set when the caller spoke over it
        self.stopped = False  # cut before or while it was written
        # Made on the session's loop when the reply starts (``run``): a reply may be made
        # in another thread (prepare_turn's).
        self._stream: asyncio.Task[conversation.Reply] | None = None

    @property
    def still_heard(self) -> str:
        """What the caller hears of the reply after its last word was sent: all of it,
        unless they spoke over it or the socket closed."""
        return "" if self.stopped or self.heard is not None else "".join(self.sent)

    def cut(self, *, heard: str | None) -> None:
        """Stop writing: the caller spoke over the reply (``heard``: what they heard of
        it) or the socket closed (None: what was sent is kept, or what the caller heard
        of it when they had spoken over it just before)."""
        if heard is not None:
            self.heard = heard
        if self.streaming:
            self.stopped = True
            if self._stream is not None:
                self._stream.cancel()

    async def run(self) -> Plan | None:
        """Stream the reply, record it; the plan of what follows."""
        session = self.session
        pending = self.pending
        call = pending.call
        started = time.monotonic()

        async def on_text(piece: str) -> None:
            if self.first_sent is None:
                self.first_sent = time.monotonic()
                if self.received is not None:
                    RELAY_FIRST_TOKEN.observe(self.first_sent - self.received)
            self.sent.append(piece)
            await session.send(protocol.text(piece, last=False))

        self._stream = asyncio.ensure_future(
            conversation.stream_reply(
                system=pending.system,
                history=pending.history,
                contact=pending.contact,
                answer_schema=pending.answer_schema,
                on_text=on_text,
            )
        )
        if session.closed:
            # The socket closed before the model was asked (the caller hung up right
            # after their words): nothing is said, so nothing is asked.
            self.stopped = True
        if self.stopped:
            self._stream.cancel()
        try:
            answer = await self._stream
        except asyncio.CancelledError:
            if not self.stopped:
                raise  # the session's own task was cancelled
            self.streaming = False
            if self.sent:
                await _quietly(session.send(protocol.text("", last=True)))
            heard = self.heard if self.heard is not None else "".join(self.sent).strip()
            if self.heard is not None or heard or self.caller is not None:
                # (else not a word left: no line was said, nothing to write)
                await on_socket(records.heard_only)(
                    call,
                    heard,
                    response_ms=self._response_ms(),
                    caller=self.caller,
                    spoken_over=self.heard is not None,
                )
            self._remember(heard.strip(), next_sequence=None)
            self.finished = True
            return Plan() if not session.ended else None
        except (conversation.ConversationUnavailable, conversation.ConversationRejected) as exc:
            self.streaming = False
            RELAY_ERRORS.labels(kind="model").inc()
            logger.warning("Call %s: the model failed on a relay turn: %s", call.pk, exc)
            if self.sent:
                await session.send(protocol.text("", last=True))
            answer_plan = await on_socket(records.model_failed)(
                call, retrying=pending.retrying, said="".join(self.sent).strip(), caller=self.caller
            )
            self._remember("", next_sequence=None)
            self.finished = True
            return Plan.from_answer(answer_plan)
        finally:
            self.streaming = False
        await session.send(protocol.text("", last=True))
        model_ms = round((time.monotonic() - started) * 1000)
        acted, next_sequence = await on_socket(records.record_streamed)(
            call, answer, model_ms=model_ms, response_ms=self._response_ms(), caller=self.caller
        )
        self._remember(answer.text, next_sequence=next_sequence)
        self.finished = True
        if self.heard is not None:  # spoken over while it was recorded
            await on_socket(records.cut_last_line)(call.pk, self.heard)
            if self.session.memory is not None:
                self.session.memory.cut(self.heard)
        return Plan.from_answer(acted)

    def _remember(self, reply: str, *, next_sequence: int | None) -> None:
        """Keep the exchange in the session's memory (the caller's words and ``reply``),
        or mark the memory to be read again (the flow wrote the caller's words, or the
        exchange wrote more than two lines)."""
        memory = self.session.memory
        if memory is None:
            return
        if self.caller is None:
            memory.next_sequence = None
            return
        memory.said(self.caller.words, reply, next_sequence=next_sequence)

    def _response_ms(self) -> int | None:
        if self.first_sent is None or self.received is None:
            return None
        return round((self.first_sent - self.received) * 1000)


async def _quietly(work: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await work
