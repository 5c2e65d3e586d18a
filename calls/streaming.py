"""An AI reply on a live call, streamed: its first sentence is said as soon as it is
voiced while the model still writes, and the rest follows at the continuation webhook
(``continue_reply``); the caller may speak over the first line (``interrupted``).

What a reply means for the call (its tools, the call's end) is ``calls.flow``'s: a reply
is recorded by ``model_turns.record_reply``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.utils import timezone

from calls import conversation, deadlines, transports
from calls.dialogue import Dialogue, template_of
from calls.model_turns import Acted, PendingReply, interrupted_key, model_failed, record_reply
from calls.models import Call, Turn
from calls.services import speech_for_call
from voices.clips import Speech

logger = logging.getLogger(__name__)

T = TypeVar("T")


# The blocking work of async webhooks (database, speech rendering) runs in this pool of
# threads, not in Django's single thread for sync code, so that calls do not queue behind
# each other. Between two pieces of work a thread gives its database connection back to
# the web process's pool (DATABASE_POOL), so idle threads hold none.
_THREADS = ThreadPoolExecutor(max_workers=settings.WEBHOOK_THREADS, thread_name_prefix="webhook")


def in_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` as a coroutine run in the webhooks' pool of threads, in a copy of the
    caller's context (its log fields, its language).

    A plain executor, not asgiref's ``sync_to_async``: a turn makes about seven such
    trips, and asgiref's bookkeeping for each (thread-sensitive contexts, its locals,
    the task it tracks) cost more CPU than the trip itself. (An ``async_to_sync`` in
    ``function`` would run on a loop of its own, not the caller's; nothing here has one.)
    """

    def run(args: tuple, kwargs: dict) -> T:
        try:
            return function(*args, **kwargs)
        finally:
            # As at the end of a request: the connection goes back to the pool (or, with
            # no pool, is closed).
            close_old_connections()

    @functools.wraps(function)
    async def threaded(*args: Any, **kwargs: Any) -> T:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            _THREADS, context.run, run, args, kwargs
        )

    return threaded


# How long a continuation request waits for more of the reply before it keeps the line
# open with a short pause and asks again (within the webhook's own deadline).
CONTINUE_WAIT_SECONDS = 8.0
# How long a reply in progress stays readable by continuation requests.
REPLY_TTL_SECONDS = 300
# How long the reply's own answer may go past the time its first line had to be voiced
# by, when that line's voicing has not handed it back yet (a thread stuck on a socket).
VOICING_GRACE_SECONDS = 0.5


async def reply(pending: PendingReply) -> str:
    """The model's reply to ``pending`` as TwiML; its sentences are voiced while the
    model still writes.

    The answer leaves as soon as the first sentence is voiced when more is to follow
    (the model still writes, or wrote more): the transport says the first line so that
    the caller can speak over it (the turn webhook then hears them, ``interrupted``),
    then asks the continuation webhook, which serves the rest once it is voiced and
    recorded (``continue_reply``). The caller hears the start of the reply
    while the rest is made, and never waits for the reply to be recorded. A reply of one
    line, whole by the time it is voiced, is answered whole; so is any reply that no
    continuation could find (the cache is down).

    The answer leaves by the webhook's deadline (``pending.deadline``): a first line not
    voiced by then is spoken with <Say>; a model that fails, times out or has not written
    a first sentence by then gets a holding line and one more try (``retry=1``); failing
    again, the call closes politely.
    """
    call = pending.call
    loop = asyncio.get_running_loop()
    first_line: asyncio.Future[None] = loop.create_future()
    sentences_said: list[str] = []
    voicing: list[asyncio.Task[Speech]] = []
    speech_started: list[float] = []
    # One event loop runs both sides, so these flags settle who speaks the first line:
    # each is read and set with no await in between. "first_said": the first line left
    # spoken with <Say>, its clip not ready in time.
    progress = {"written": False, "early_sent": False, "final_started": False, "first_said": False}
    token = uuid.uuid4().hex
    # Whether a continuation could find this reply: the mark it looks for is stored
    # while the first sentence is voiced, not after (a reply answered whole leaves it to
    # expire).
    continuable: list[asyncio.Task[bool]] = []

    async def on_sentence(sentence: str) -> None:
        speech_started.append(time.monotonic())
        sentences_said.append(sentence)
        task = asyncio.create_task(voice(sentence, after=first_line if voicing else None))
        voicing.append(task)
        if len(voicing) == 1:
            task.add_done_callback(lambda _task: _settle(first_line))
            continuable.append(asyncio.create_task(_mark_in_progress(call.pk, token)))

    async def voice(sentence: str, *, after: asyncio.Future[None] | None) -> Speech:
        if after is None:
            deadline = pending.deadline  # the caller is waiting for this one
        else:
            # The first line is what the caller waits for: the sentences written while it
            # is voiced wait for it, rather than compete with it for this process. They
            # are served by a continuation, with a deadline of its own.
            await asyncio.wait([after])
            deadline = max(pending.deadline, time.monotonic() + _line_budget())
        return await in_thread(speech_for_call)(
            call=call, text=sentence, new_text=True, deadline=deadline
        )

    async def run() -> Acted:
        try:
            answer = await conversation.stream_reply(
                system=pending.system,
                history=pending.history,
                contact=pending.contact,
                answer_schema=pending.answer_schema,
                on_sentence=on_sentence,
            )
        except (conversation.ConversationUnavailable, conversation.ConversationRejected) as error:
            for task in voicing:
                task.cancel()
            logger.warning("Call %s: the model failed (%s).", call.pk, error)
            progress["final_started"] = True
            return Acted(twiml=await in_thread(model_failed)(call, retrying=pending.retrying))
        except asyncio.CancelledError:
            for task in voicing:
                task.cancel()
            raise
        progress["written"] = True
        lines = list(await asyncio.gather(*voicing))
        speech_ms = int((time.monotonic() - speech_started[0]) * 1000) if speech_started else 0
        total_ms = int((time.monotonic() - pending.started) * 1000)
        if len(lines) > 1 and await continuable[0]:
            progress["early_sent"] = True  # the first line leaves now, if it has not
        progress["final_started"] = True
        return await in_thread(record_reply)(
            call,
            answer,
            lines,
            timings=(answer.model_ms, speech_ms, total_ms),
            early=(token, int(progress["first_said"])) if progress["early_sent"] else None,
        )

    whole = asyncio.create_task(run())
    try:
        while not progress["early_sent"]:
            if whole.done() or progress["final_started"]:
                return (await whole).twiml
            if first_line.done() and continuable[0].done():
                if voicing[0].exception() is not None or not continuable[0].result():
                    return (await whole).twiml  # no first line, or no continuation to find
                if progress["written"] and len(voicing) == 1:
                    return (await whole).twiml  # the first line is the whole reply
                progress["early_sent"] = True
                break
            left = pending.deadline + VOICING_GRACE_SECONDS - time.monotonic()
            if left <= 0:
                if continuable and continuable[0].done() and continuable[0].result():
                    # The first sentence is written but not voiced in time: Twilio says it.
                    logger.warning("Call %s: the first line was not voiced in time.", call.pk)
                    progress["early_sent"] = progress["first_said"] = True
                    break
                # Nothing to say yet: a holding line, and the model asked once more.
                logger.warning("Call %s: the model wrote no first line in time.", call.pk)
                whole.cancel()
                progress["final_started"] = True
                return await in_thread(model_failed)(call, retrying=pending.retrying)
            waits: list[asyncio.Future[Any]] = [whole, first_line, *continuable]
            await asyncio.wait(
                [step for step in waits if not step.done()],
                timeout=left,
                return_when=asyncio.FIRST_COMPLETED,
            )
    except asyncio.CancelledError:
        whole.cancel()  # nobody will say this reply: it is not made or recorded either
        raise
    # The first sentence is ready and more is coming: it is said now, the rest follows.
    background = asyncio.create_task(_publish(call.pk, token, whole, heard=sentences_said[0]))
    _BACKGROUND[token] = background
    background.add_done_callback(lambda _task: _BACKGROUND.pop(token, None))
    language = template_of(call).language
    first = (
        Speech(text=sentences_said[0], language=language, fallback_reason="deadline")
        if progress["first_said"]
        else voicing[0].result()
    )
    return transports.transport_for(call).begin_reply(call, first, token=token)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _line_budget() -> float:
    """How long a line after the first may take to voice before it is said with <Say>."""
    return settings.WEBHOOK_DEADLINE_SECONDS / 2


# Replies of this process still being made after their first line left, by token: kept
# referenced, and awaited directly by a continuation this process serves.
_BACKGROUND: dict[str, asyncio.Task] = {}


def _reply_key(call_id: int, token: str) -> str:
    return f"calls:reply:{call_id}:{token}"


async def _store(call_id: int, token: str, value: dict) -> None:
    await in_thread(cache.set)(_reply_key(call_id, token), value, REPLY_TTL_SECONDS)


async def _mark_in_progress(call_id: int, token: str) -> bool:
    """Store the mark of a reply in progress; False (logged) when it cannot be stored."""
    try:
        await _store(call_id, token, {"done": False})
    except Exception:
        logger.exception("Call %s: a reply in progress cannot be continued.", call_id)
        return False
    return True


async def _publish(call_id: int, token: str, whole: asyncio.Task[Acted], *, heard: str) -> None:
    """Keep the end of the reply where a continuation request (perhaps served by another
    process) finds it, with what an interruption needs to know (``interrupted``)."""
    try:
        acted = await whole
    except Exception:
        logger.exception("Call %s: the reply in progress failed.", call_id)
        acted = Acted(twiml=transports.transport_for(None).hang_up())
    await _store(
        call_id,
        token,
        {
            "done": True,
            "twiml": acted.twiml,
            "sequence": acted.sequence,
            "terminal": acted.terminal,
            "interrupted": acted.interrupted,
            "heard": heard,
        },
    )


async def _finished_reply(call_id: int, token: str, *, wait: float) -> dict | None:
    """The state of reply ``token`` once it is recorded, waiting up to ``wait`` seconds:
    {"done": True, ...} (see _publish); {"done": False} when it is still being made;
    None when no such reply is known."""
    local = _BACKGROUND.get(token)
    if local is not None and local.get_loop() is asyncio.get_running_loop():
        # Made here: wait for it without polling the cache.
        done, _pending = await asyncio.wait([local], timeout=wait)
        if not done:
            return {"done": False}
    deadline = time.monotonic() + wait
    while True:
        state = await in_thread(cache.get)(_reply_key(call_id, token))
        if state is None or state.get("done") or time.monotonic() >= deadline:
            return state
        await asyncio.sleep(0.05)


def _wait_within_deadline() -> float:
    """How long a webhook may wait for a reply in progress: CONTINUE_WAIT_SECONDS, less
    when its deadline is nearer (half a second kept to answer)."""
    left = deadlines.left(deadlines.current())
    if left is None:
        return CONTINUE_WAIT_SECONDS
    return max(0.0, min(CONTINUE_WAIT_SECONDS, left - 0.5))


async def continue_reply(*, call_id: int, token: str) -> str:
    """What comes after the first sentence of a reply in progress: the rest once the
    model and speech are done (then listen, hang up or transfer). While it is still being
    made the caller hears a short pause and Twilio asks again."""
    state = await _finished_reply(call_id, token, wait=_wait_within_deadline())
    if state is None:
        logger.warning("Call %s: continuation of an unknown reply %s.", call_id, token)
        return transports.transport_for(None).hang_up()
    if state.get("done"):
        return state["twiml"]
    return transports.transport_for(None).keep_waiting(call_id, token=token)


async def interrupted(*, call_id: int, token: str) -> str | None:
    """The caller spoke over the first line of reply ``token`` (the <Gather> around it
    heard them). The reply is kept as heard: its first line only, and what it would have
    done at its end (end the call, transfer it) is undone, since the caller's words come
    next. Returns None to go on with the caller's turn, or the reply's own answer when it
    opted the callee out (the confirmation is said whatever was said over it).

    The mark left here tells a reply not recorded yet to record itself so; one already
    recorded is cut back (``_cut_back``)."""
    try:
        await in_thread(cache.set)(interrupted_key(call_id, token), True, REPLY_TTL_SECONDS)
    except Exception:
        logger.exception("Call %s: the interruption of reply %s is not kept.", call_id, token)
    # Half the time left: the caller's own turn must be answered in the rest.
    state = await _finished_reply(call_id, token, wait=_wait_within_deadline() / 2)
    if not state or not state.get("done"):
        # Not recorded yet (it will see the mark), or unknown: the caller's turn goes on.
        return None
    if state.get("terminal") == "opt_out":
        return state["twiml"]
    if not state.get("interrupted") and state.get("sequence") is not None:
        await in_thread(_cut_back)(
            call_id, sequence=state["sequence"], heard=state["heard"], terminal=state["terminal"]
        )
    return None


def _cut_back(call_id: int, *, sequence: int, heard: str, terminal: str | None) -> None:
    """Keep reply turn ``sequence`` of call ``call_id`` as the caller heard it (``heard``,
    its first line), and undo the end of the dialogue (``terminal``) it recorded."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return
        Turn.objects.filter(call=call, sequence=sequence, role=Turn.Role.AGENT).update(text=heard)
        if terminal not in ("end_call", "transfer_to_human"):
            return
        kept = Dialogue.from_json(call.dialogue)
        dialogue = kept.but(
            ended=False, transferred=None, closed="" if kept.closed == "model" else kept.closed
        )
        flags = {key: value for key, value in call.flags.items() if key != "transferred"}
        Call.objects.filter(pk=call.pk).update(
            dialogue=dialogue.to_json(), flags=flags, updated_at=timezone.now()
        )
    logger.info("Call %s: the caller spoke over the reply; kept as heard.", call_id)
