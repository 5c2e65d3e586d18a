"""Opt-out intent: whether what a caller said or pressed asks not to be called again.

Pure functions, no I/O. Spanish and English are both recognised whatever the call's language:
people switch, and "stop" is said in Spain too.

An opt-out must be honoured (the right to object, GDPR art. 21; the company's do-not-call
list, 47 CFR 64.1200(d)), so a doubt leans towards opt-out: a wrong one loses a contact, a
missed one calls again someone who said no. What counts:

- a request not to be called (CALL_REQUESTS_*): "no me llame más", "no vuelvan a
  llamarme", "don't call me again", "stop calling". Except a callback: when the first word
  after the request, skipping CALLBACK_LEADS (articles, prepositions, "más", "again"), is a
  CALLBACK_TIMES word or a number, the caller is asking to be called at another time: "no
  me llame ahora, mejor mañana", "no me llame más tarde", "don't call me before 9". So "no
  me llamen más hoy" is a callback too;
- a request to be removed (REMOVALS_*): "bórreme", "dénme de baja", "lista Robinson",
  "remove me", "unsubscribe", "opt out". Only reflexive "de baja" counts: "estoy de baja"
  is sick leave, and "quiero dar de baja el seguro" cancels a service, not the calls;
- a removal verb that needs its list (LIST_REMOVALS_*), followed within LIST_WINDOW words by
  a LIST_WORDS_* noun: "quítenme de su lista", "take me off your list", but not "sáqueme de
  dudas" or "take me off hold";
- "baja" or "stop" as the whole utterance, give or take POLITE_WORDS ("¡Baja, por favor!",
  "stop stop"): alone they are commands, in a sentence ordinary words ("la temporada baja",
  "the bus stop", "stop by tomorrow");
- the template's opt-out digit, when it has one.

Not being interested ("no me interesa", "not interested") is not an opt-out: it declines the
offer, not the calls, and the call's outcome records it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

# Requests not to be called, each cancelled by a callback time right after it.
CALL_REQUESTS_ES = (
    "no me llame",
    "no me llamen",
    "no me llames",
    "no me llaméis",
    "no llame más",
    "no llamen más",
    "no llames más",
    "no me vuelva a llamar",
    "no me vuelvan a llamar",
    "no me vuelvas a llamar",
    "no vuelva a llamarme",
    "no vuelvan a llamarme",
    "no vuelvas a llamarme",
    "no vuelva a llamar",
    "no vuelvan a llamar",
    "no vuelvas a llamar",
    "no quiero que me llame",
    "no quiero que me llamen",
    "no quiero que me llames",
    "no quiero que me vuelva a llamar",
    "no quiero que me vuelvan a llamar",
    "no quiero que me vuelvas a llamar",
    "no quiero más llamadas",
    "no quiero recibir más llamadas",
    "no más llamadas",
    "deje de llamarme",
    "dejen de llamarme",
    "deja de llamarme",
    "dejad de llamarme",
    "no me moleste más",
    "no me molesten más",
    "no me molestes más",
    "deje de molestarme",
    "dejen de molestarme",
    "deja de molestarme",
)
CALL_REQUESTS_EN = (
    "don't call me",
    "do not call me",
    "don't call",
    "do not call",
    "don't ever call me",
    "do not ever call me",
    "never call me",
    "don't phone me",
    "do not phone me",
    "don't contact me",
    "do not contact me",
    "stop calling",
    "quit calling",
    "no more calls",
    "don't want any more calls",
    "don't want to be called",
    "don't want you to call me",
    "do not want you to call me",
)
# Requests to be removed, wherever they appear.
REMOVALS_ES = (
    "bórreme",
    "bórrenme",
    "bórrame",
    "elimíneme",
    "elimínenme",
    "elimíname",
    "borren mi número",
    "borre mi número",
    "eliminen mi número",
    "borren mis datos",
    "borre mis datos",
    "dénme de baja",
    "déme de baja",
    "dame de baja",
    "darme de baja",
    "darse de baja",
    "me doy de baja",
    "me den de baja",
    "me dé de baja",
    "me dan de baja",
    "lista Robinson",
)
REMOVALS_EN = (
    "remove me",
    "remove my number",
    "delete my number",
    "delete my details",
    "unsubscribe",
    "opt out",
    "opt me out",
)
# Removal verbs that count only with a list noun in the next LIST_WINDOW words.
LIST_REMOVALS_ES = (
    "quíteme",
    "quítenme",
    "quítame",
    "sáqueme",
    "sáquenme",
    "sácame",
    "me quite",
    "me quiten",
    "me saque",
    "me saquen",
    "me borre",
    "me borren",
    "me elimine",
    "me eliminen",
)
LIST_REMOVALS_EN = (
    "take me off",
    "take my number off",
    "take my name off",
    "delete me from",
    "get me off",
)
LIST_WORDS_ES = ("lista", "listas", "listado", "base", "bases", "registro", "sistema", "agenda")
LIST_WORDS_EN = ("list", "lists", "database", "records", "system", "register", "registry")
LIST_WINDOW = 4
# A request followed by one of these (after any CALLBACK_LEADS) asks for a callback.
CALLBACK_TIMES_ES = (
    "ahora",
    "hoy",
    "luego",
    "mañana",
    "mañanas",
    "tarde",
    "tardes",
    "noche",
    "noches",
    "mediodía",
    "temprano",
    "pronto",
    "momento",
    "rato",
    "ratito",
    "día",
    "semana",
    "finde",
    "mes",
    "hora",
    "horas",
    "minutos",
    "lunes",
    "martes",
    "miércoles",
    "jueves",
    "viernes",
    "sábado",
    "sábados",
    "domingo",
    "domingos",
)
CALLBACK_TIMES_EN = (
    "now",
    "today",
    "tonight",
    "tomorrow",
    "later",
    "morning",
    "mornings",
    "afternoon",
    "afternoons",
    "evening",
    "evenings",
    "night",
    "nights",
    "noon",
    "early",
    "late",
    "soon",
    "moment",
    "day",
    "week",
    "weekend",
    "month",
    "hour",
    "hours",
    "minutes",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
CALLBACK_LEADS_ES = (
    "más",
    "nunca",
    "jamás",
    "tan",
    "a",
    "al",
    "el",
    "la",
    "los",
    "las",
    "en",
    "de",
    "del",
    "por",
    "este",
    "esta",
    "estos",
    "estas",
    "hasta",
    "antes",
    "después",
    "durante",
    "próximo",
    "próxima",
)
CALLBACK_LEADS_EN = (
    "again",
    "ever",
    "at",
    "in",
    "on",
    "the",
    "this",
    "that",
    "until",
    "till",
    "before",
    "after",
    "during",
    "next",
    "right",
    "so",
    "too",
    "a",
    "an",
)
# Words said alone to opt out, and the politeness that may come with them.
COMMAND_WORDS = ("baja", "stop")
POLITE_WORDS = ("por", "favor", "please", "gracias", "thanks", "thank", "you", "sí", "yes", "ok")

_APOSTROPHES = str.maketrans("", "", "'`\u00b4\u2018\u2019\u02bc")
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """``text`` as speech is compared: lowercase, without accents or punctuation, words
    separated by single spaces. Apostrophes are dropped, so "don't" and "dont" are one word."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES).casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_NOT_WORD.sub(" ", bare).split())


def contains_phrase(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """Whether the normalised ``phrase`` appears in ``words`` as whole, contiguous words."""
    return next(_phrase_ends(words, phrase), None) is not None


def is_opt_out(
    *,
    speech: str = "",
    digits: str = "",
    opt_out_digit: str | None = None,
    language: str = "es-ES",
) -> bool:
    """True when the caller asks not to be called again (the rules are in the module
    docstring). ``language`` is the call's; both languages are recognised whatever it is."""
    if opt_out_digit and digits.strip() == opt_out_digit:
        return True
    words = tuple(normalise(speech).split())
    if not words:
        return False
    return (
        _is_command(words)
        or any(contains_phrase(words, phrase) for phrase in _REMOVALS)
        or _asks_list_removal(words)
        or _asks_not_to_be_called(words)
    )


def _phrases(*groups: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(normalise(phrase).split()) for group in groups for phrase in group)


def _words(*groups: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise(word) for group in groups for word in group)


_CALL_REQUESTS = _phrases(CALL_REQUESTS_ES, CALL_REQUESTS_EN)
_REMOVALS = _phrases(REMOVALS_ES, REMOVALS_EN)
_LIST_REMOVALS = _phrases(LIST_REMOVALS_ES, LIST_REMOVALS_EN)
_LIST_WORDS = _words(LIST_WORDS_ES, LIST_WORDS_EN)
_CALLBACK_TIMES = _words(CALLBACK_TIMES_ES, CALLBACK_TIMES_EN)
_CALLBACK_LEADS = _words(CALLBACK_LEADS_ES, CALLBACK_LEADS_EN)
_COMMAND_WORDS = _words(COMMAND_WORDS)
_POLITE_WORDS = _words(POLITE_WORDS)


def _phrase_ends(words: tuple[str, ...], phrase: tuple[str, ...]) -> Iterator[int]:
    """Where each occurrence of ``phrase`` in ``words`` ends."""
    size = len(phrase)
    if not size:
        return
    for start in range(len(words) - size + 1):
        if words[start : start + size] == phrase:
            yield start + size


def _is_command(words: tuple[str, ...]) -> bool:
    said = {word for word in words if word not in _POLITE_WORDS}
    return bool(said) and said <= _COMMAND_WORDS


def _asks_list_removal(words: tuple[str, ...]) -> bool:
    return any(
        _LIST_WORDS.intersection(words[end : end + LIST_WINDOW])
        for phrase in _LIST_REMOVALS
        for end in _phrase_ends(words, phrase)
    )


def _asks_not_to_be_called(words: tuple[str, ...]) -> bool:
    for start in range(len(words)):
        # The longest request starting here decides: "don't call me now" is read after
        # "don't call me", not after "don't call".
        ends = [
            start + len(phrase)
            for phrase in _CALL_REQUESTS
            if words[start : start + len(phrase)] == phrase
        ]
        if ends and not _is_callback(words[max(ends) :]):
            return True
    return False


def _is_callback(rest: tuple[str, ...]) -> bool:
    """Whether the words after a request name a time, so the request is a callback."""
    for word in rest:
        if word in _CALLBACK_TIMES or word.isdigit():
            return True
        if word not in _CALLBACK_LEADS:
            return False
    return False
