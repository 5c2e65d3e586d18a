"""The one sentence splitter of a call's spoken text.

A model's reply is voiced a sentence at a time as it is written (``SentenceSplitter``
fed piece by piece); the admin finds the clips a turn played by cutting the turn's text
the same way (``split_sentences``).
"""

from __future__ import annotations

import re

# Lower-case words that end with a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    {"sr", "sra", "srta", "dr", "dra", "dña", "ud", "uds", "vd", "vds", "av", "avda", "núm"}
    | {"tel", "tfno", "pág", "aprox", "mr", "mrs", "ms", "st", "ej", "approx", "no"}
)
# A run of ., ?, ! or … (and closing quotes or brackets) followed by a space or by Spanish
# opening ¿ or ¡, or a line break.
_BOUNDARY = re.compile(r"[.?!…]+[\"'\u201d\u2019»)\]]*(?:\s+|(?=[¿¡]))|\n\s*")
_LAST_WORD = re.compile(r"(\w+)\.$")


class SentenceSplitter:
    """Cuts text arriving in pieces into sentences, each as soon as it is complete.

    A sentence ends at ., ?, ! or … followed by a space (or by ¿ or ¡), so "10.30" and a
    period at the end of the text so far wait for more; "Sr." and initials do not end one,
    unless ``abbreviations`` is False: then every such end cuts (the finest cut, of which
    a template's sentences and a model's are both runs).
    """

    def __init__(self, *, abbreviations: bool = True) -> None:
        self._pending = ""
        self._abbreviations = abbreviations

    def feed(self, text: str) -> list[str]:
        """The sentences completed by `text`."""
        self._pending += text
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._pending):
            piece = self._pending[start : match.end()].strip()
            if self._abbreviations and _ends_in_abbreviation(piece):
                continue
            if piece:
                sentences.append(piece)
            start = match.end()
        self._pending = self._pending[start:]
        return sentences

    def flush(self) -> list[str]:
        """What is left once the text is complete, as a last sentence."""
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []


def split_sentences(text: str, *, abbreviations: bool = True) -> list[str]:
    """The sentences of the whole ``text``, as ``SentenceSplitter`` cuts them."""
    splitter = SentenceSplitter(abbreviations=abbreviations)
    return [*splitter.feed(text), *splitter.flush()]


def _ends_in_abbreviation(piece: str) -> bool:
    match = _LAST_WORD.search(piece)
    if match is None:
        return False
    word = match.group(1)
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())
