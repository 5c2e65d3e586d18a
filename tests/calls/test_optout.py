"""Opt-out intent in what a caller said or pressed, in Spanish and English."""

from __future__ import annotations

import pytest

from calls.optout import contains_phrase, is_opt_out, normalise


@pytest.mark.parametrize(
    "speech",
    [
        # Spanish, as recognised with and without accents and punctuation
        "No me llame más.",
        "no me llame mas",
        "¡NO ME LLAMEN MÁS!",
        "no me llamen",
        "No, no me interesa. No me vuelvan a llamar.",
        "no vuelvan a llamarme",
        "No quiero que me llamen.",
        "no quiero que me llamen, gracias",
        "no me llame nunca más",
        "no me llame más, por favor",
        "no me llamen a partir de ahora",
        "a partir de mañana no me llamen",
        "no me llame de nuevo",
        "dejen de llamarme",
        "no quiero recibir más llamadas",
        "Bórreme de la lista.",
        "borrenme",
        "Quítenme de su lista, por favor.",
        "sáquenme de su base de datos",
        "quiero que me borren de sus listas",
        "Dénme de baja.",
        "denme de baja",
        "quiero darme de baja",
        "me doy de baja",
        "estoy en la lista Robinson",
        "Baja.",
        "baja, por favor",
        "stop",
        "Stop! Stop!",
        # English
        "unsubscribe",
        "Unsubscribe me please",
        "Remove me from your list.",
        "Don't call me again.",
        "dont call me again",
        "don\u2019t call me",  # a typographic apostrophe
        "do not call me",
        "Do not call me anymore!",
        "put me on your do-not-call list",
        "Take me off your list.",
        "take me off your calling list",
        "Stop calling.",
        "please stop calling me",
        "never call me again",
        "I want to opt out",
        "I don't want any more calls",
        # switching language mid-call
        "no thanks, stop calling",
        "sorry, no me llamen más",
    ],
)
def test_is_opt_out_recognises_opt_outs(speech) -> None:
    assert is_opt_out(speech=speech) is True


@pytest.mark.parametrize(
    "speech",
    [
        "",
        "sí, claro",
        # callbacks: a time right after the request
        "No, no me llame ahora, mejor mañana.",
        "no me llame mas tarde",
        "No me llame más tarde de las nueve.",
        "no me llamen más hoy",
        "no me llame por la mañana",
        "no me llames hasta el lunes",
        "no me llame antes de las 10",
        "no me llame en este momento",
        "¿Me puede llamar más tarde?",
        "llámeme mañana",
        "Don't call me now, call me tomorrow.",
        "don't call me right now",
        "don't call me before 9",
        "never call me in the morning",
        "call me later",
        "can you call me back later?",
        "why don't you call me tomorrow",
        # not interested is not an opt-out
        "No me interesa.",
        "no me interesa, gracias",
        "I'm not interested.",
        # "baja" and "stop" inside a sentence are ordinary words
        "estoy de baja por maternidad",
        "en la baja temporada",
        "quiero dar de baja el seguro del coche",
        "la tarifa baja",
        "I'll stop by tomorrow",
        "I'm at the bus stop",
        "where's my stopwatch",
        # removal verbs without a list
        "sáqueme de dudas",
        "take me off hold",
        # other verbs and forms of llamar
        "¿por qué no me llamaron ayer?",
        "no me molesta que me llamen",
    ],
)
def test_is_opt_out_ignores_other_answers(speech) -> None:
    assert is_opt_out(speech=speech) is False


@pytest.mark.parametrize("language", ["es-ES", "en-US", "fr-FR"])
def test_is_opt_out_recognises_both_languages_whatever_the_call_language(language) -> None:
    assert is_opt_out(speech="no me llamen más", language=language)
    assert is_opt_out(speech="stop calling me", language=language)


@pytest.mark.parametrize(
    ("digits", "opt_out_digit", "expected"),
    [
        ("9", "9", True),
        (" 9 ", "9", True),
        ("1", "9", False),
        ("99", "9", False),
        ("9", None, False),
        ("9", "", False),
        ("", "9", False),
    ],
)
def test_is_opt_out_uses_the_opt_out_digit(digits, opt_out_digit, expected) -> None:
    assert is_opt_out(digits=digits, opt_out_digit=opt_out_digit) is expected


def test_is_opt_out_opts_out_by_speech_whatever_the_digits() -> None:
    assert is_opt_out(speech="no me llamen más", digits="1", opt_out_digit="9")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¿Sí, CLARO?", "si claro"),
        ("  Bórreme   de la lista...  ", "borreme de la lista"),
        ("Mañana, ¡a las 9!", "manana a las 9"),
        ("don't", "dont"),
        ("don\u2019t", "dont"),
        ("opt-out", "opt out"),
        ("snake_case", "snake case"),
        ("", ""),
    ],
)
def test_normalise_folds_case_accents_and_punctuation(text, expected) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("words", "phrase", "expected"),
    [
        (("si", "claro"), ("si",), True),
        (("no", "lo", "se"), ("lo", "se"), True),
        (("nota",), ("no",), False),
        (("no", "lo", "se"), ("no", "se"), False),
        (("no",), (), False),
    ],
)
def test_contains_phrase_matches_whole_contiguous_words(words, phrase, expected) -> None:
    assert contains_phrase(words, phrase) is expected
