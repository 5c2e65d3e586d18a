"""The OpenAI adapter, driving the real SDK against the fake OpenAI server over HTTP."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import Counter

from callcenter.metrics import MODEL_ERRORS, MODEL_TOKENS
from calls import conversation
from calls.conversation import (
    TOOLS,
    Action,
    ConversationRejected,
    ConversationUnavailable,
    SentenceSplitter,
    extract_outcome,
    stream_reply,
    system_prompt,
)
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


def reply(**kwargs: Any) -> conversation.Reply:
    kwargs.setdefault("system", "Eres el asistente de Clínica Demo.")
    kwargs.setdefault("history", HISTORY)
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
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-test", 99, 0.3)
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
        instructions="Confirma la cita de Lucía.", now_local=now, language="es-ES"
    )

    assert prompt.startswith("Confirma la cita de Lucía.")
    assert "Saturday 2026-11-28 17:42 (Europe/Madrid, UTC+01:00)" in prompt
    assert "Sunday 2026-11-29" in prompt  # to resolve "mañana"
    assert "Spanish (es-ES)" in prompt
    for tool in TOOLS:
        assert tool["function"]["name"] in prompt
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
    )
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
