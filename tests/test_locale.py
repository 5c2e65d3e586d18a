"""The project ships Spanish and English: the Spanish catalogue is complete and compiled."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest
from django.utils import translation

from calls.models import Call
from campaigns.models import Campaign

LOCALE = Path(__file__).resolve().parent.parent / "locale"


def test_spanish_catalogue_translates_every_message() -> None:
    catalogue = polib.pofile(str(LOCALE / "es" / "LC_MESSAGES" / "django.po"))

    assert [entry.msgid for entry in catalogue.untranslated_entries()] == []
    assert [entry.msgid for entry in catalogue.fuzzy_entries()] == []
    assert len(catalogue) > 100


@pytest.mark.parametrize("language", ["es", "en"])
def test_compiled_catalogue_matches_its_source(language: str) -> None:
    folder = LOCALE / language / "LC_MESSAGES"
    source = {
        (e.msgctxt, e.msgid): e.msgstr
        for e in polib.pofile(str(folder / "django.po"))
        if e.translated()
    }
    compiled = {
        (e.msgctxt, e.msgid): e.msgstr for e in polib.mofile(str(folder / "django.mo")) if e.msgid
    }

    assert compiled == source, "run `make messages` to recompile the catalogues"


def test_model_labels_speak_spanish_and_english() -> None:
    with translation.override("es"):
        assert str(Campaign.State.RUNNING.label) == "En curso"
        assert str(Campaign._meta.verbose_name) == "campaña"
    with translation.override("en"):
        assert str(Campaign.State.RUNNING.label) == "Running"
        assert str(Call.Status.NO_ANSWER.label) == "No answer"
