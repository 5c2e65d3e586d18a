"""The one sentence splitter: a model's reply as it streams, and a turn's text in the admin."""

from __future__ import annotations

from calls.sentences import SentenceSplitter, split_sentences


def test_split_sentences_keeps_abbreviations_and_times_inside_a_sentence() -> None:
    assert split_sentences("Hola, Sr. García. Su cita es a las 10.30. ¿Vendrá?") == [
        "Hola, Sr. García.",
        "Su cita es a las 10.30.",
        "¿Vendrá?",
    ]


def test_split_sentences_without_abbreviations_cuts_at_every_possible_end() -> None:
    # A template voices "Hola, Sr." and "García." apart (templates.rendering.sentences):
    # the admin's finest cut finds both clips, and a model's "Hola, Sr. García." as a run.
    assert split_sentences("Hola, Sr. García.¿Vendrá?", abbreviations=False) == [
        "Hola, Sr.",
        "García.",
        "¿Vendrá?",
    ]


def test_sentence_splitter_hands_each_sentence_on_once_it_is_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Perfecto, Ana. Le esper") == ["Perfecto, Ana."]
    assert splitter.feed("amos el martes.") == []  # a period at the end may be 10.30
    assert splitter.feed(" ¿Algo") == ["Le esperamos el martes."]
    assert splitter.flush() == ["¿Algo"]
