"""The OpenAI adapter, driving the real SDK against the fake OpenAI server over HTTP."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import Counter

from callcenter.metrics import MODEL_ERRORS, MODEL_TOKENS
from calls import conversation
from calls.agent import TOOLS, system_prompt
from calls.conversation import (
    Action,
    ConversationRejected,
    ConversationUnavailable,
    extract_outcome,
    stream_reply,
)
from calls.sentences import SentenceSplitter
from tests.fakes.openai import DEFAULT_REPLY, FakeOpenAI, ToolCall

HISTORY = [
    {"role": "assistant", "content": "Hola, Lucía. Le llamamos de Clínica Demo."},
    {"role": "user", "content": "Sí, dígame."},
]
SCHEMA = {
    "type": "object",
    "properties": {"confirmed": {"type": "boolean"}, "notes": {"type": "string"}},
    "required": ["confirmed"],
    "additionalProperties": False,
}


# The families whose parameters differ: the original gpt-4 (no JSON mode), a chat model,
# an o-series and a gpt-5 reasoning model.
FAMILIES = ["gpt-4", "gpt-4o-mini", "o4-mini", "gpt-5-mini"]
MODEL_PARAMETERS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "reasoning_effort",
    "response_format",
)


@pytest.fixture(autouse=True)
def _forget_what_servers_taught(settings) -> Iterator[None]:
    """Each test meets its servers afresh (a port may come round again), with the
    documented defaults of the model settings."""
    settings.DEFAULT_MODEL = "gpt-4o-mini"
    settings.MAX_TOKENS = 150
    settings.TEMPERATURE = 0.7
    settings.OPENAI_TOKEN_PARAMETER = "max_completion_tokens"
    settings.OPENAI_TOOL_MAX_TOKENS = 512
    settings.OPENAI_REASONING_EFFORT = "auto"
    settings.OPENAI_REASONING_MAX_TOKENS = 2048
    conversation._LEARNT.clear()
    yield
    conversation._LEARNT.clear()


def model_parameters(body: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a request that depend on the model."""
    return {name: body[name] for name in MODEL_PARAMETERS if name in body}


def reply(**kwargs: Any) -> conversation.Reply:
    kwargs.setdefault("system", "Eres el asistente de Clínica Demo.")
    kwargs.setdefault("history", HISTORY)
    kwargs.setdefault("answer_schema", SCHEMA)
    return asyncio.run(stream_reply(**kwargs))


def metric(counter: Counter, **labels: str) -> float:
    return counter.labels(**labels)._value.get()


# --- stream_reply: the request --------------------------------------------------------------


def test_stream_reply_sends_the_configured_request(fake_openai: FakeOpenAI, settings) -> None:
    settings.DEFAULT_MODEL = "gpt-test"
    settings.MAX_TOKENS = 99
    settings.TEMPERATURE = 0.3

    result = reply(system="Confirma la cita.")

    [request] = fake_openai.requests
    body = request.json
    assert request.headers["authorization"] == "Bearer test-key"
    # The bound covers the spoken text and the tool arguments (the text is cut locally).
    assert model_parameters(body) == {"max_completion_tokens": 99 + 512, "temperature": 0.3}
    assert body["model"] == result.model == "gpt-test"
    assert body["messages"] == [{"role": "system", "content": "Confirma la cita."}, *HISTORY]
    assert [tool["function"]["name"] for tool in body["tools"]] == [
        "end_call",
        "transfer_to_human",
        "schedule_callback",
        "record_answer",
        "opt_out",
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert result.text == DEFAULT_REPLY


def test_stream_reply_without_a_key_is_rejected_without_a_request(
    fake_openai: FakeOpenAI, settings
) -> None:
    settings.OPENAI_API_KEY = ""

    with pytest.raises(ConversationRejected) as caught:
        reply()

    assert caught.value.status == 0
    assert "OPENAI_API_KEY" in caught.value.reason
    assert fake_openai.requests == []
    assert not conversation.is_configured()


# --- stream_reply: streaming ----------------------------------------------------------------


def test_stream_reply_hands_over_the_first_sentence_before_the_stream_ends(
    fake_openai: FakeOpenAI,
) -> None:
    # given a reply streamed in 8-character chunks 30 ms apart (about 0.3 s in all)
    fake_openai.queue_reply(
        "Perfecto. Entonces confirmo su cita del martes. ¿Algo más", chunk_delay=0.03
    )
    heard: list[tuple[str, float]] = []

    async def on_sentence(sentence: str) -> None:
        heard.append((sentence, time.perf_counter()))

    # when
    started = time.perf_counter()
    result = reply(on_sentence=on_sentence)
    ended = time.perf_counter()

    # then every sentence arrives, the unfinished last one at the end
    assert [sentence for sentence, _at in heard] == [
        "Perfecto.",
        "Entonces confirmo su cita del martes.",
        "¿Algo más",
    ]
    # and the first one while most of the stream was still to come
    first_at = heard[0][1] - started
    assert first_at < (ended - started) - 0.15
    assert result.first_sentence_ms is not None
    assert result.first_sentence_ms < result.model_ms - 150
    assert result.text == "Perfecto. Entonces confirmo su cita del martes. ¿Algo más"


def test_stream_reply_allows_a_slow_stream_once_the_first_chunk_came(
    fake_openai: FakeOpenAI,
) -> None:
    # chunks 0.1 s apart for about 0.7 s: past the 0.3 s first-chunk timeout, within 10 s
    fake_openai.queue_reply("Muy bien, lo dejo anotado.", chunk_delay=0.1, chunk_size=10)

    result = reply(timeout=0.3)

    assert result.text == "Muy bien, lo dejo anotado."
    assert result.model_ms > 450


def test_stream_reply_reports_usage_tokens(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply("Gracias.", usage=(321, 12))
    before = metric(MODEL_TOKENS, kind="prompt")

    result = reply()

    assert (result.prompt_tokens, result.completion_tokens) == (321, 12)
    assert metric(MODEL_TOKENS, kind="prompt") - before == 321


def test_stream_reply_propagates_an_error_of_on_sentence(fake_openai: FakeOpenAI) -> None:
    async def on_sentence(sentence: str) -> None:
        raise TimeoutError("speech took too long")

    with pytest.raises(TimeoutError, match="speech took too long"):
        reply(on_sentence=on_sentence)


# --- stream_reply: tool calls ---------------------------------------------------------------


def test_stream_reply_assembles_tool_calls_from_fragments(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(
        "Le llamo mañana a las diez. Hasta luego.",
        chunk_size=3,  # every argument object arrives in many pieces
        tool_calls=[
            ("record_answer", {"field": "confirmed", "value": False}),
            ("schedule_callback", {"at": "2026-11-29T10:00", "note": "prefiere mañanas"}),
            ("end_call", {"reason": "callback scheduled"}),
        ],
    )

    result = reply()

    assert result.actions == (
        Action("record_answer", {"field": "confirmed", "value": False}),
        Action("schedule_callback", {"at": "2026-11-29T10:00:00", "note": "prefiere mañanas"}),
        Action("end_call", {"reason": "callback scheduled"}),
    )
    assert result.text == "Le llamo mañana a las diez. Hasta luego."


def test_stream_reply_with_only_a_tool_call_has_no_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(tool_calls=[("opt_out", "")])

    result = reply()

    assert result.text == ""
    assert result.first_sentence_ms is None
    assert result.actions == (Action("opt_out", {}),)


@pytest.mark.parametrize(
    "call",
    [
        ToolCall("end_call", '{"reason": "bye"'),  # JSON cut short
        ToolCall("hang_up", {"reason": "bye"}),  # no such tool
        ToolCall("end_call", {}),  # reason missing
        ToolCall("end_call", {"reason": "bye", "mood": "happy"}),  # unknown argument
        ToolCall("record_answer", {"field": "confirmed"}),  # value missing
        ToolCall("record_answer", {"field": "confirmed", "value": [1, 2]}),  # not a scalar
        ToolCall("schedule_callback", {"at": "mañana a las diez"}),
        ToolCall("schedule_callback", {"at": "2026-11-29"}),  # no time of day
        ToolCall("opt_out", "null"),
    ],
    ids=lambda call: f"{call.name}:{call.arguments}",
)
def test_stream_reply_drops_an_invalid_tool_call(
    fake_openai: FakeOpenAI, call: ToolCall, caplog
) -> None:
    fake_openai.queue_reply(
        "Adiós.", tool_calls=[call, ToolCall("transfer_to_human", {"reason": "asks"})]
    )
    before = metric(MODEL_ERRORS, reason="invalid_output")

    result = reply()

    assert result.actions == (Action("transfer_to_human", {"reason": "asks"}),)
    assert metric(MODEL_ERRORS, reason="invalid_output") - before == 1
    assert "Dropped the model's tool call" in caplog.text


# --- stream_reply: failures -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["before the headers", "after the headers"])
def test_stream_reply_times_out_waiting_for_the_first_chunk(
    fake_openai: FakeOpenAI, where: str
) -> None:
    if where == "before the headers":
        fake_openai.hang_next(3)
    else:
        fake_openai.queue_reply("Tarde.", first_delay=3)
    before = metric(MODEL_ERRORS, reason="timeout")

    started = time.perf_counter()
    with pytest.raises(ConversationUnavailable) as caught:
        reply(timeout=0.3)
    elapsed = time.perf_counter() - started

    assert caught.value.timed_out
    assert 0.25 < elapsed < 0.8
    assert metric(MODEL_ERRORS, reason="timeout") - before == 1


def test_stream_reply_timeout_defaults_to_the_setting(fake_openai: FakeOpenAI, settings) -> None:
    settings.MODEL_TIMEOUT = 0.3
    fake_openai.hang_next(3)

    started = time.perf_counter()
    with pytest.raises(ConversationUnavailable):
        reply()

    assert time.perf_counter() - started < 0.8


@pytest.mark.parametrize(
    "events",
    [
        ("not json at all", "[DONE]"),  # an OpenAI-compatible server gone astray
        ("[1, 2, 3]", "[DONE]"),  # JSON, but not a chunk
        ('{"choices": [{"delta": "Hola"}]}', "[DONE]"),  # a chunk of the wrong shape
    ],
    ids=["not-json", "a-list", "wrong-shape"],
)
def test_stream_reply_is_unavailable_on_an_unreadable_chunk(
    fake_openai: FakeOpenAI, events: tuple[str, ...]
) -> None:
    fake_openai.queue_reply(raw_events=events)
    before = metric(MODEL_ERRORS, reason="invalid_output")

    with pytest.raises(ConversationUnavailable) as caught:
        reply()

    assert caught.value.reason == "El modelo de IA envió una respuesta que no se ha podido leer."
    assert metric(MODEL_ERRORS, reason="invalid_output") - before == 1


def test_stream_reply_reads_a_reply_without_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(
        raw_events=(
            '{"choices": [{"index": 0, "delta": {"content": "Hola. "}}]}',
            '{"choices": [{"index": 0, "delta": {"content": "Adiós."}, "finish_reason": "stop"}]}',
            "[DONE]",
        )
    )

    result = reply()

    assert result.text == "Hola. Adiós."
    assert (result.prompt_tokens, result.completion_tokens) == (None, None)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_stream_reply_is_unavailable_on_a_transient_status(
    fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.fail_next(status)

    with pytest.raises(ConversationUnavailable) as caught:
        reply()

    assert caught.value.status == status
    assert not caught.value.timed_out
    assert len(fake_openai.requests) == 1  # the SDK's own retries are off


@pytest.mark.parametrize("where", ["before answering", "mid-stream"])
def test_stream_reply_is_unavailable_when_the_connection_drops(
    fake_openai: FakeOpenAI, where: str
) -> None:
    if where == "before answering":
        fake_openai.drop_next()
    else:
        fake_openai.queue_reply("Hola. Le llamo de la clínica.", drop_after=3)

    with pytest.raises(ConversationUnavailable) as caught:
        reply()

    assert caught.value.status is None


def test_stream_reply_is_rejected_with_a_wrong_key(fake_openai: FakeOpenAI, settings) -> None:
    settings.OPENAI_API_KEY = "sk-wrong-key-123456"

    with pytest.raises(ConversationRejected) as caught:
        reply()

    assert caught.value.status == 401
    assert "Incorrect API key" in caught.value.provider_message
    assert "sk-wrong-key-123456" not in str(caught.value) + caught.value.reason


def test_stream_reply_is_rejected_on_a_bad_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, message="Invalid 'messages[1].content'.")

    with pytest.raises(ConversationRejected) as caught:
        reply()

    assert caught.value.status == 400
    assert caught.value.provider_message == "Invalid 'messages[1].content'."


# --- Sentences ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola. ¿Qué tal? ¡Genial!", ["Hola.", "¿Qué tal?", "¡Genial!"]),
        ("Perfecto.¿Le va bien el lunes?", ["Perfecto.", "¿Le va bien el lunes?"]),
        ("Pues… no sé. Vale", ["Pues…", "no sé.", "Vale"]),
        (
            "Su cita es a las 10.30 con la Dra. Pérez. Gracias.",
            ["Su cita es a las 10.30 con la Dra. Pérez.", "Gracias."],
        ),
        ("Dijo «vale». Adiós.", ["Dijo «vale».", "Adiós."]),
        ("Una línea\nOtra línea", ["Una línea", "Otra línea"]),
    ],
)
def test_sentence_splitter_cuts_sentences_however_the_text_arrives(
    text: str, expected: list[str]
) -> None:
    for size in (1, 3, len(text)):
        splitter = SentenceSplitter()
        sentences = [
            s
            for start in range(0, len(text), size)
            for s in splitter.feed(text[start : start + size])
        ]

        assert [*sentences, *splitter.flush()] == expected


def test_sentence_splitter_waits_for_what_follows_a_period() -> None:
    splitter = SentenceSplitter()

    assert splitter.feed("Son las 10.") == []  # "10.30" or the end of a sentence?
    assert splitter.feed("30. Bien") == ["Son las 10.30."]
    assert splitter.flush() == ["Bien"]


# --- system_prompt --------------------------------------------------------------------------


def test_system_prompt_gives_the_local_time_language_and_tools() -> None:
    now = datetime.datetime(2026, 11, 28, 17, 42, tzinfo=ZoneInfo("Europe/Madrid"))

    prompt = system_prompt(
        instructions="Confirma la cita de Lucía.",
        now_local=now,
        language="es-ES",
        answer_fields=["confirmed", "notes"],
    )

    assert prompt.startswith("Confirma la cita de Lucía.")
    assert "Saturday 2026-11-28 17:42 (Europe/Madrid, UTC+01:00)" in prompt
    assert "Sunday 2026-11-29" in prompt  # to resolve "mañana"
    assert "Spanish (es-ES)" in prompt
    for tool in TOOLS:
        assert tool["function"]["name"] in prompt
    assert "one call per field, one of: confirmed, notes." in prompt
    assert "markdown" in prompt


def test_system_prompt_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        system_prompt(instructions="x", now_local=datetime.datetime(2026, 11, 28), language="es")


# --- extract_outcome ------------------------------------------------------------------------

TRANSCRIPT = [
    {"role": "assistant", "content": "¿Confirma su cita del martes?"},
    {"role": "user", "content": "Sí, allí estaré."},
]


def extract(**kwargs: Any) -> conversation.Extraction:
    kwargs.setdefault("transcript", TRANSCRIPT)
    kwargs.setdefault("schema", SCHEMA)
    kwargs.setdefault("language", "es-ES")
    return extract_outcome(**kwargs)


def answer(outcome: Any, summary: str = "Confirma la cita.") -> str:
    return json.dumps({"outcome": outcome, "summary": summary}, ensure_ascii=False)


def test_extract_outcome_returns_the_valid_outcome(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(answer({"confirmed": True}, "Lucía confirma la cita del martes."))

    result = extract()

    assert result == conversation.Extraction(
        data={"confirmed": True},
        summary="Lucía confirma la cita del martes.",
        raw=answer({"confirmed": True}, "Lucía confirma la cita del martes."),
        failed=False,
        error="",
        model="gpt-4o-mini",
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    assert result.prompt_tokens and result.completion_tokens
    [body] = fake_openai.chat_requests
    assert body["response_format"] == {"type": "json_object"}
    assert not body.get("stream")
    assert json.dumps(SCHEMA) in body["messages"][0]["content"]
    assert "Person: Sí, allí estaré." in body["messages"][1]["content"]


def test_extract_outcome_counts_its_tokens(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(answer({"confirmed": True}), usage=(512, 40))
    before = metric(MODEL_TOKENS, kind="prompt"), metric(MODEL_TOKENS, kind="completion")

    extract()

    after = metric(MODEL_TOKENS, kind="prompt"), metric(MODEL_TOKENS, kind="completion")
    assert (after[0] - before[0], after[1] - before[1]) == (512, 40)


def test_extract_outcome_retries_once_telling_the_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(answer({"confirmed": "sí"}))
    fake_openai.queue_reply(answer({"confirmed": True}))

    result = extract()

    assert not result.failed
    assert result.data == {"confirmed": True}
    first, second = fake_openai.chat_requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": answer({"confirmed": "sí"})}
    assert "confirmed: 'sí' is not of type 'boolean'" in second["messages"][-1]["content"]


def test_extract_outcome_fails_after_two_invalid_answers(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply("Claro, aquí tiene el resultado: confirmado")
    fake_openai.queue_reply(answer({"confirmed": True, "mood": "happy"}, "Confirma."))
    before = metric(MODEL_ERRORS, reason="invalid_output")

    result = extract()

    assert result.failed
    assert result.data is None
    assert result.raw == answer({"confirmed": True, "mood": "happy"}, "Confirma.")
    assert "mood" in result.error
    assert "not valid JSON" in fake_openai.chat_requests[1]["messages"][-1]["content"]
    assert len(fake_openai.chat_requests) == 2
    assert metric(MODEL_ERRORS, reason="invalid_output") - before == 2


def test_extract_outcome_with_an_empty_schema_takes_any_object(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(answer({"anything": [1, "two"]}))

    result = extract(schema={})

    assert result.data == {"anything": [1, "two"]}


def test_extract_outcome_needs_an_outcome_object(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(answer([1, 2]))
    fake_openai.queue_reply('{"summary": "Nada."}')

    result = extract(schema={})

    assert result.failed
    assert result.summary == "Nada."


def test_extract_outcome_is_unavailable_on_a_server_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(500)

    with pytest.raises(ConversationUnavailable) as caught:
        extract()

    assert caught.value.status == 500


def test_extract_outcome_without_a_key_is_rejected_without_a_request(
    fake_openai: FakeOpenAI, settings
) -> None:
    settings.OPENAI_API_KEY = ""

    with pytest.raises(ConversationRejected):
        extract()

    assert fake_openai.requests == []


# --- Model families -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4", {"max_completion_tokens": 662, "temperature": 0.7}),
        ("gpt-4o-mini", {"max_completion_tokens": 662, "temperature": 0.7}),
        # Reasoning models: no temperature; the bound covers reasoning, text and tools.
        ("o4-mini", {"max_completion_tokens": 2710, "reasoning_effort": "low"}),
        ("gpt-5-mini", {"max_completion_tokens": 2710, "reasoning_effort": "minimal"}),
    ],
)
def test_stream_reply_sends_the_parameters_each_family_takes(
    fake_openai: FakeOpenAI, settings, model: str, expected: dict[str, Any]
) -> None:
    settings.DEFAULT_MODEL = model

    result = reply()

    [body] = fake_openai.chat_requests
    assert model_parameters(body) == expected
    assert result.text == DEFAULT_REPLY
    assert result.model == model


@pytest.mark.parametrize("model", FAMILIES)
def test_stream_reply_converses_with_each_model_family(
    fake_openai: FakeOpenAI, settings, model: str
) -> None:
    # given a spoken reply, then a reply of a tool alone and the model's continuation
    settings.DEFAULT_MODEL = model
    fake_openai.queue_reply("Perfecto, Lucía. ¿Confirma la cita del martes?")
    recorded = ToolCall("record_answer", {"field": "confirmed", "value": True}, id="call_abc")
    fake_openai.queue_reply(tool_calls=[recorded], usage=(300, 20))
    fake_openai.queue_reply("Anotado. ¿Algo más?", usage=(330, 7))
    heard: list[str] = []

    async def on_sentence(sentence: str) -> None:
        heard.append(sentence)

    # when
    first = reply(on_sentence=on_sentence)
    second = reply(
        history=[
            *HISTORY,
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "Sí, confirmo."},
        ],
        on_sentence=on_sentence,
    )

    # then the caller heard both replies, the continuation's included
    assert heard == ["Perfecto, Lucía.", "¿Confirma la cita del martes?", "Anotado.", "¿Algo más?"]
    assert (first.text, first.actions) == ("Perfecto, Lucía. ¿Confirma la cita del martes?", ())
    assert second.text == "Anotado. ¿Algo más?"
    assert second.actions == (Action("record_answer", {"field": "confirmed", "value": True}),)
    assert first.model == second.model == model
    assert (second.prompt_tokens, second.completion_tokens) == (630, 27)
    # and the continuation was asked with the tool call answered
    _spoken, asked, continued = fake_openai.chat_requests
    assert continued["messages"][: len(asked["messages"])] == asked["messages"]
    assert continued["messages"][len(asked["messages"]) :] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {
                        "name": "record_answer",
                        "arguments": '{"field": "confirmed", "value": true}',
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_abc",
            "content": '{"ok": true, "recorded": {"confirmed": true}}',
        },
    ]
    assert all(model_parameters(body) == model_parameters(asked) for body in (continued,))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-mini-2024-07-18", (False, True, None)),
        ("gpt-4-0613", (False, False, None)),
        ("gpt-4-32k", (False, False, None)),
        ("gpt-4-1106-preview", (False, True, None)),
        ("o3-mini-2025-01-31", (True, True, "low")),
        ("o1", (True, True, "low")),
        ("gpt-5-nano-2025-08-07", (True, True, "minimal")),
        ("openai/gpt-5", (True, True, "minimal")),
        ("gpt-5.1", (True, True, "none")),
        ("gpt-5-chat-latest", (False, True, None)),
        ("llama-3.1-70b", (False, True, None)),
    ],
)
def test_model_traits_go_by_the_family_of_the_name(name: str, expected: tuple) -> None:
    traits = conversation.model_traits(name)

    assert (traits.reasoning, traits.json_mode, traits.effort) == expected


# --- stream_reply: tools alone, then the continuation ---------------------------------------


def test_stream_reply_gathers_the_actions_of_both_requests(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(
        tool_calls=[
            ("schedule_callback", {"at": "2026-11-29T10:00", "note": "mañanas"}),
            ("record_answer", {"field": "confirmed", "value": False}),
        ]
    )
    fake_openai.queue_reply(
        "Le llamo mañana a las diez. Hasta luego.",
        tool_calls=[("end_call", {"reason": "callback scheduled"})],
    )

    result = reply()

    assert result.text == "Le llamo mañana a las diez. Hasta luego."
    assert [action.name for action in result.actions] == [
        "schedule_callback",
        "record_answer",
        "end_call",
    ]
    results = [m for m in fake_openai.chat_requests[1]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"]) for m in results] == [
        {"ok": True, "callback_at": "2026-11-29T10:00:00", "note": "mañanas"},
        {"ok": True, "recorded": {"confirmed": False}},
    ]


def test_stream_reply_tells_the_model_what_was_wrong_with_a_dropped_tool_call(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_reply(tool_calls=[("schedule_callback", {"at": "mañana a las diez"})])
    fake_openai.queue_reply("¿A qué hora le viene bien mañana?")

    result = reply()

    assert result.text == "¿A qué hora le viene bien mañana?"
    assert result.actions == ()
    *_, asked, answered = fake_openai.chat_requests[1]["messages"]
    assert asked["tool_calls"][0]["function"]["name"] == "schedule_callback"
    assert answered["tool_call_id"] == asked["tool_calls"][0]["id"]
    assert json.loads(answered["content"]) == {
        "ok": False,
        "error": "Nothing was done: `at` is not an ISO 8601 date and time.",
    }


@pytest.mark.parametrize(
    "terminal",
    [
        ("end_call", {"reason": "done"}),
        ("transfer_to_human", {"reason": "asks"}),
        ("opt_out", {}),
    ],
    ids=lambda call: call[0],
)
def test_stream_reply_never_continues_after_a_terminal_tool(
    fake_openai: FakeOpenAI, terminal: tuple[str, dict]
) -> None:
    fake_openai.queue_reply(
        tool_calls=[("record_answer", {"field": "confirmed", "value": True}), terminal]
    )

    result = reply()

    assert result.text == ""
    assert [action.name for action in result.actions] == ["record_answer", terminal[0]]
    assert len(fake_openai.chat_requests) == 1  # the flow speaks its own lines


def test_stream_reply_continues_once_at_most(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(tool_calls=[("record_answer", {"field": "confirmed", "value": True})])
    fake_openai.queue_reply(tool_calls=[("record_answer", {"field": "notes", "value": "ok"})])

    result = reply()

    assert result.text == ""
    assert [action.arguments["field"] for action in result.actions] == ["confirmed", "notes"]
    assert len(fake_openai.chat_requests) == 2


def test_stream_reply_does_not_continue_a_reply_that_spoke(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_reply(
        "Anotado.", tool_calls=[("record_answer", {"field": "confirmed", "value": True})]
    )

    result = reply()

    assert result.text == "Anotado."
    assert len(fake_openai.chat_requests) == 1


def test_stream_reply_gives_the_continuation_its_own_wait_for_a_first_chunk(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_reply(tool_calls=[("record_answer", {"field": "confirmed", "value": True})])
    fake_openai.queue_reply("Tarde.", first_delay=3)

    with pytest.raises(ConversationUnavailable) as caught:
        reply(timeout=0.3)

    assert caught.value.timed_out
    assert len(fake_openai.chat_requests) == 2


# --- stream_reply: the spoken bound ---------------------------------------------------------


def test_stream_reply_bounds_the_spoken_text_but_not_the_tool_arguments(
    fake_openai: FakeOpenAI, settings
) -> None:
    # given 12 tokens of speech (48 characters) and a tool argument of 300 tokens
    settings.MAX_TOKENS = 12
    notes = "Prefiere que le llamen por la tarde, después de las cinco. " * 20
    fake_openai.queue_reply(
        "Perfecto, lo anoto. Le esperamos el martes. Recuerde traer su tarjeta sanitaria.",
        tool_calls=[("record_answer", {"field": "notes", "value": notes})],
    )
    heard: list[str] = []

    async def on_sentence(sentence: str) -> None:
        heard.append(sentence)

    # when
    result = reply(on_sentence=on_sentence)

    # then the caller hears whole sentences within the bound, and the argument is whole
    assert heard == ["Perfecto, lo anoto.", "Le esperamos el martes."]
    assert result.text == "Perfecto, lo anoto. Le esperamos el martes."
    assert result.actions == (Action("record_answer", {"field": "notes", "value": notes}),)
    [body] = fake_openai.chat_requests
    assert body["max_completion_tokens"] == 12 + settings.OPENAI_TOOL_MAX_TOKENS


def test_stream_reply_shortens_a_first_sentence_longer_than_the_bound(
    fake_openai: FakeOpenAI, settings
) -> None:
    settings.MAX_TOKENS = 5  # 20 characters
    fake_openai.queue_reply("Le confirmo que su cita del martes está reservada. Adiós.")

    result = reply()

    assert result.text == "Le confirmo que su…"


def test_stream_reply_leaves_a_reasoning_model_room_to_reason(
    fake_openai: FakeOpenAI, settings
) -> None:
    # 1500 reasoning tokens: ten times MAX_TOKENS, within the reasoning budget
    settings.DEFAULT_MODEL = "o4-mini"
    fake_openai.queue_reply("Perfecto. Queda confirmada.", reasoning_tokens=1500)

    result = reply()

    assert result.text == "Perfecto. Queda confirmada."


def test_stream_reply_warns_when_reasoning_took_the_whole_bound(
    fake_openai: FakeOpenAI, settings, caplog
) -> None:
    settings.DEFAULT_MODEL = "o4-mini"
    settings.OPENAI_REASONING_MAX_TOKENS = 0
    fake_openai.queue_reply("Perfecto. Queda confirmada.", reasoning_tokens=1500)

    result = reply()

    assert (result.text, result.actions) == ("", ())
    assert "OPENAI_REASONING_MAX_TOKENS" in caplog.text


# --- Adapting to what a server refuses ------------------------------------------------------


def test_the_token_parameter_setting_serves_a_server_that_knows_only_max_tokens(
    fake_openai: FakeOpenAI, settings
) -> None:
    fake_openai.only_max_tokens = True
    settings.OPENAI_TOKEN_PARAMETER = "max_tokens"
    fake_openai.queue_reply("Perfecto.")
    fake_openai.queue_reply(answer({"confirmed": True}))

    result = reply()
    extraction = extract()

    assert (result.text, extraction.data) == ("Perfecto.", {"confirmed": True})
    turn_body, extraction_body = fake_openai.chat_requests
    assert model_parameters(turn_body) == {"max_tokens": 662, "temperature": 0.7}
    assert model_parameters(extraction_body) == {
        "max_tokens": 1024,
        "temperature": 0.0,
        "response_format": {"type": "json_object"},
    }


def test_a_server_that_knows_only_max_tokens_is_learnt_from_its_refusal(
    fake_openai: FakeOpenAI, caplog
) -> None:
    # given a server that refuses max_completion_tokens, and the setting's default
    fake_openai.only_max_tokens = True

    # when a turn, another and an extraction ask it
    first = reply()
    second = reply()
    extraction = extract(schema={})

    # then the first request was sent again with max_tokens, and the others at once
    assert (first.text, second.text) == (DEFAULT_REPLY, DEFAULT_REPLY)
    assert not extraction.failed
    bounds = [
        [name for name in ("max_tokens", "max_completion_tokens") if name in body]
        for body in fake_openai.chat_requests
    ]
    assert bounds == [["max_completion_tokens"], ["max_tokens"], ["max_tokens"], ["max_tokens"]]
    assert "refused max_completion_tokens" in caplog.text


def test_a_deployment_name_is_learnt_from_its_refusals_and_reasoning(
    fake_openai: FakeOpenAI, settings
) -> None:
    # given a deployment whose name tells nothing: behind it, gpt-5-mini
    fake_openai.aliases["centralita"] = "gpt-5-mini"
    settings.DEFAULT_MODEL = "centralita"

    # when two turns ask it
    first = reply()
    second = reply()

    # then the temperature it refused was left out, once, and then never sent; its usage
    # told that it reasons, so the next turn had a reasoning budget and effort
    assert (first.text, second.text) == (DEFAULT_REPLY, DEFAULT_REPLY)
    refused, retried, learnt = (model_parameters(body) for body in fake_openai.chat_requests)
    assert refused == {"max_completion_tokens": 662, "temperature": 0.7}
    assert retried == {"max_completion_tokens": 662}
    assert learnt == {"max_completion_tokens": 2710, "reasoning_effort": "low"}


def test_a_reasoning_effort_the_model_does_not_take_gives_way_to_one_it_lists(
    fake_openai: FakeOpenAI, settings
) -> None:
    settings.DEFAULT_MODEL = "o4-mini"
    settings.OPENAI_REASONING_EFFORT = "minimal"  # gpt-5's; the o-series' least is low

    reply()
    reply()

    efforts = [body["reasoning_effort"] for body in fake_openai.chat_requests]
    assert efforts == ["minimal", "low", "low"]


def test_a_refused_request_is_sent_again_once_only(fake_openai: FakeOpenAI, settings) -> None:
    # given an o4-mini deployment, and a token parameter it refuses: two refusals to learn
    fake_openai.aliases["centralita"] = "o4-mini"
    settings.DEFAULT_MODEL = "centralita"
    settings.OPENAI_TOKEN_PARAMETER = "max_tokens"

    # when the first turn meets both refusals
    with pytest.raises(ConversationRejected) as caught:
        reply()

    # then it was sent again once, and refused; the next turn has learnt both
    assert caught.value.status == 400
    assert "temperature" in caught.value.provider_message
    assert reply().text == DEFAULT_REPLY
    assert [model_parameters(body) for body in fake_openai.chat_requests] == [
        {"max_tokens": 662, "temperature": 0.7},
        {"max_completion_tokens": 662, "temperature": 0.7},
        {"max_completion_tokens": 662},
    ]


@pytest.mark.parametrize(
    ("message", "param", "code"),
    [
        ("Invalid 'messages[1].content': string too long.", "messages[1].content", None),
        ("Invalid 'temperature': decimal above maximum value.", "temperature", "invalid_value"),
        ("Unsupported value: 'tool_choice' is not supported.", "tool_choice", "unsupported_value"),
    ],
)
def test_a_refusal_of_anything_else_is_not_sent_again(
    fake_openai: FakeOpenAI, message: str, param: str, code: str | None
) -> None:
    fake_openai.fail_next(400, message=message, param=param, code=code)

    with pytest.raises(ConversationRejected):
        reply()

    assert len(fake_openai.chat_requests) == 1
    assert conversation._LEARNT == {}


# --- extract_outcome per family -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # The original gpt-4 has no JSON mode: the prompt asks for the object alone.
        ("gpt-4", {"max_completion_tokens": 1024, "temperature": 0.0}),
        (
            "gpt-4o-mini",
            {
                "max_completion_tokens": 1024,
                "temperature": 0.0,
                "response_format": {"type": "json_object"},
            },
        ),
        (
            "o4-mini",
            {
                "max_completion_tokens": 1024 + 2048,
                "reasoning_effort": "low",
                "response_format": {"type": "json_object"},
            },
        ),
        (
            "gpt-5-mini",
            {
                "max_completion_tokens": 1024 + 2048,
                "reasoning_effort": "low",
                "response_format": {"type": "json_object"},
            },
        ),
    ],
)
def test_extract_outcome_with_each_model_family(
    fake_openai: FakeOpenAI, settings, model: str, expected: dict[str, Any]
) -> None:
    settings.DEFAULT_MODEL = model
    fake_openai.queue_reply(answer({"confirmed": "sí"}), usage=(500, 30))
    fake_openai.queue_reply(answer({"confirmed": True}), usage=(560, 25))

    result = extract()

    assert (result.data, result.failed, result.model) == ({"confirmed": True}, False, model)
    assert (result.prompt_tokens, result.completion_tokens) == (1060, 55)
    first, _corrected = fake_openai.chat_requests
    assert model_parameters(first) == expected
    assert "Answer with only the JSON object" in first["messages"][0]["content"]


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"outcome": {"confirmed": true}, "summary": "Confirma."}\n```',
        'Aquí tiene el resultado:\n{"outcome": {"confirmed": true}, "summary": "Confirma."}\n'
        "Espero que le sirva.",
        'Claro.\n```\n{"outcome": {"confirmed": true}, "summary": "Confirma."}\n```\nListo.',
        'Resultado {según la llamada}: {"outcome": {"confirmed": true}, "summary": "Confirma."}',
    ],
    ids=["fenced", "wrapped", "fenced-and-wrapped", "braces-before"],
)
def test_extract_outcome_finds_the_json_object_in_the_text_of_gpt4(
    fake_openai: FakeOpenAI, settings, text: str
) -> None:
    settings.DEFAULT_MODEL = "gpt-4-0613"
    fake_openai.queue_reply(text)

    result = extract()

    assert (result.data, result.summary, result.raw) == ({"confirmed": True}, "Confirma.", text)
    [body] = fake_openai.chat_requests
    assert "response_format" not in body


def test_a_model_without_json_mode_is_learnt_from_its_refusal(
    fake_openai: FakeOpenAI, settings
) -> None:
    fake_openai.aliases["extractor"] = "gpt-4"
    settings.DEFAULT_MODEL = "extractor"
    fake_openai.queue_reply(f"```json\n{answer({'confirmed': True})}\n```")
    fake_openai.queue_reply(answer({"confirmed": False}))

    first, second = extract(), extract()

    assert (first.data, second.data) == ({"confirmed": True}, {"confirmed": False})
    formats = [body.get("response_format") for body in fake_openai.chat_requests]
    assert formats == [{"type": "json_object"}, None, None]


# --- The fake answers as OpenAI does --------------------------------------------------------


def post_chat(fake: FakeOpenAI, **body: Any) -> tuple[int, dict[str, Any]]:
    """POST a chat completion to the fake as plain JSON: its status and answer."""
    body.setdefault("messages", [{"role": "user", "content": "Hola. Answer in JSON."}])
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Authorization": "Bearer test-key", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


ASKED_TOOL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "opt_out", "arguments": "{}"}}
    ],
}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"model": "gpt-4-0613", "response_format": {"type": "json_object"}},
            "response_format",
            None,
        ),
        ({"model": "o4-mini", "max_tokens": 100}, "max_tokens", "unsupported_parameter"),
        ({"model": "gpt-5-mini", "temperature": 0.7}, "temperature", "unsupported_value"),
        ({"model": "o3", "reasoning_effort": "minimal"}, "reasoning_effort", "unsupported_value"),
        ({"model": "gpt-5", "reasoning_effort": "none"}, "reasoning_effort", "unsupported_value"),
        (
            {"model": "gpt-4o-mini", "reasoning_effort": "low"},
            "reasoning_effort",
            "unsupported_parameter",
        ),
        ({"model": "gpt-4o", "max_tokens": 10, "max_completion_tokens": 10}, "max_tokens", None),
        (
            {
                "model": "gpt-4o",
                "messages": [{"role": "tool", "tool_call_id": "x", "content": "{}"}],
            },
            "messages.[0].role",
            None,
        ),
        (
            {
                "model": "gpt-4o",
                "messages": [
                    ASKED_TOOL,
                    {"role": "tool", "tool_call_id": "call_2", "content": "{}"},
                ],
            },
            "messages.[1].role",
            None,
        ),
        ({"model": "gpt-4o", "messages": [ASKED_TOOL]}, "messages.[0].role", None),
    ],
    ids=[
        "gpt-4-json-mode",
        "reasoning-max-tokens",
        "reasoning-temperature",
        "o-series-minimal",
        "gpt-5-none",
        "chat-reasoning-effort",
        "both-bounds",
        "tool-without-call",
        "tool-of-another-call",
        "call-without-tool",
    ],
)
def test_the_fake_refuses_what_openai_refuses(
    fake_openai: FakeOpenAI, body: dict[str, Any], param: str, code: str | None
) -> None:
    status, answered = post_chat(fake_openai, **body)

    assert status == 400
    assert answered["error"]["type"] == "invalid_request_error"
    assert (answered["error"]["param"], answered["error"]["code"]) == (param, code)
    assert answered["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-5-chat-latest", "temperature": 0.7, "max_tokens": 50},
        {"model": "gpt-4o-mini-2024-07-18", "response_format": {"type": "json_object"}},
        {"model": "o4-mini", "temperature": 1, "reasoning_effort": "high"},
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "Adiós"},
                ASKED_TOOL,
                {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
            ],
        },
    ],
    ids=["gpt-5-chat", "json-mode", "reasoning-defaults", "tool-answered"],
)
def test_the_fake_takes_what_openai_takes(fake_openai: FakeOpenAI, body: dict[str, Any]) -> None:
    status, _answered = post_chat(fake_openai, **body)

    assert status == 200


def test_the_fake_spends_a_reasoning_models_bound_on_reasoning_first(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_reply("Una respuesta que no llega a escribirse.")
    fake_openai.queue_reply("Una respuesta corta.")

    _status, starved = post_chat(fake_openai, model="o4-mini", max_completion_tokens=100)
    _status, whole = post_chat(fake_openai, model="o4-mini", max_completion_tokens=1000)

    assert starved["choices"][0]["finish_reason"] == "length"
    assert starved["choices"][0]["message"]["content"] is None
    assert starved["usage"]["completion_tokens_details"] == {"reasoning_tokens": 100}
    assert whole["choices"][0]["message"]["content"] == "Una respuesta corta."
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 480  # medium


# --- probe_model: a call's requests, tiny -----------------------------------------------------


@pytest.mark.parametrize("model", FAMILIES)
def test_probe_model_sends_what_calls_send_but_a_tiny_bound(
    fake_openai: FakeOpenAI, settings, model: str
) -> None:
    # given the requests a call sends this model: a turn, then the outcome's extraction
    settings.DEFAULT_MODEL = model
    fake_openai.queue_reply("Hola.")
    fake_openai.queue_reply(answer({"confirmed": True}))
    reply()
    extract()

    # when the model is probed as a turn and as an extraction
    turn = conversation.probe_model(kind="turn", timeout=3.0)
    extraction = conversation.probe_model(kind="extraction", timeout=3.0)

    # then each probe is its call's request, parameter for parameter, but for the bound
    call_turn, call_extraction, probe_turn, probe_extraction = fake_openai.chat_requests

    def shape(body: dict[str, Any]) -> dict[str, Any]:
        bound = next(name for name in conversation.TOKEN_PARAMETERS if name in body)
        # A call's record_answer names its template's fields: the tools are compared by name.
        tools = [tool["function"]["name"] for tool in body.get("tools", ())]
        return {
            **{name: value for name, value in body.items() if name not in ("messages", bound)},
            **({"tools": tools} if tools else {}),
        }

    assert shape(probe_turn) == shape(call_turn)
    assert shape(probe_extraction) == shape(call_extraction)
    reasoning = conversation.model_traits(model).reasoning
    for body in (probe_turn, probe_extraction):
        assert body["max_completion_tokens"] == 16 + (2048 if reasoning else 0)
    assert turn.parameters == model_parameters(probe_turn) and turn.refused == ()
    assert extraction.parameters == model_parameters(probe_extraction)
    assert turn.finish_reason in ("stop", "length")


def test_probe_model_reports_a_refused_parameter_it_adapted_to(settings) -> None:
    with FakeOpenAI(only_max_tokens=True) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"

        probe = conversation.probe_model(kind="turn", timeout=3.0)

    [refused] = probe.refused
    assert (refused.name, refused.value) == ("max_completion_tokens", 16)
    assert "Unrecognized request argument" in refused.message
    assert probe.parameters == {"max_tokens": 16, "temperature": 0.7}


def test_probe_model_names_a_parameter_it_could_not_adapt_to(settings) -> None:
    # given a server that knows only max_tokens, serving a model that refuses it
    with FakeOpenAI(only_max_tokens=True) as server:
        settings.OPENAI_BASE_URL = f"{server.url}/v1"
        settings.OPENAI_API_KEY = "test-key"
        settings.DEFAULT_MODEL = "o4-mini"

        with pytest.raises(ConversationRejected) as caught:
            conversation.probe_model(kind="extraction", timeout=3.0)

    assert caught.value.status == 400
    assert caught.value.parameter in conversation.TOKEN_PARAMETERS


def test_probe_model_that_hangs_is_unavailable_within_its_timeout(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.hang_next(5)

    started = time.monotonic()
    with pytest.raises(ConversationUnavailable) as caught:
        conversation.probe_model(kind="turn", timeout=1.0)

    assert caught.value.timed_out
    assert time.monotonic() - started < 3
