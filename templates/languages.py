"""The languages a call can be held in: those Twilio's <Gather> recognises speech in.

A template's language is the `language` of every <Gather> of its calls, and Twilio refuses
a tag it does not know at call time (warnings 13512 and 13331: the gather fails and the
caller's words are lost), so it is checked when the template is saved, naming the
closest valid tag.
"""

from __future__ import annotations

import difflib

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Twilio's list of speech recognition languages for <Gather> (twilio.com/docs/voice/twiml/
# gather#languagetags), in Twilio's spelling.
GATHER_LANGUAGES: tuple[str, ...] = (
    "af-ZA", "am-ET", "hy-AM", "az-AZ", "id-ID", "ms-MY", "bn-BD", "bn-IN", "ca-ES",
    "cs-CZ", "da-DK", "de-DE", "en-AU", "en-CA", "en-GH", "en-GB", "en-IN", "en-IE",
    "en-KE", "en-NZ", "en-NG", "en-PH", "en-ZA", "en-TZ", "en-US", "es-AR", "es-BO",
    "es-CL", "es-CO", "es-CR", "es-EC", "es-SV", "es-ES", "es-US", "es-GT", "es-HN",
    "es-MX", "es-NI", "es-PA", "es-PY", "es-PE", "es-PR", "es-DO", "es-UY", "es-VE",
    "eu-ES", "fil-PH", "fr-CA", "fr-FR", "gl-ES", "ka-GE", "gu-IN", "hr-HR", "zu-ZA",
    "is-IS", "it-IT", "jv-ID", "kn-IN", "km-KH", "lo-LA", "lv-LV", "lt-LT", "hu-HU",
    "ml-IN", "mr-IN", "nl-NL", "ne-NP", "nb-NO", "pl-PL", "pt-BR", "pt-PT", "ro-RO",
    "si-LK", "sk-SK", "sl-SI", "su-ID", "sw-TZ", "sw-KE", "fi-FI", "sv-SE", "ta-IN",
    "ta-SG", "ta-LK", "ta-MY", "te-IN", "vi-VN", "tr-TR", "ur-PK", "ur-IN", "el-GR",
    "bg-BG", "ru-RU", "sr-RS", "uk-UA", "he-IL", "ar-IL", "ar-JO", "ar-AE", "ar-BH",
    "ar-DZ", "ar-SA", "ar-IQ", "ar-KW", "ar-MA", "ar-TN", "ar-OM", "ar-PS", "ar-QA",
    "ar-LB", "ar-EG", "fa-IR", "hi-IN", "th-TH", "ko-KR", "cmn-Hant-TW", "yue-Hant-HK",
    "ja-JP", "cmn-Hans-HK", "cmn-Hans-CN",
)  # fmt: skip
_BY_LOWER = {tag.lower(): tag for tag in GATHER_LANGUAGES}
# Tags people write that are not Twilio's, and the one they mean.
_ALIASES = {
    "en-uk": "en-GB",
    "zh-cn": "cmn-Hans-CN",
    "zh-tw": "cmn-Hant-TW",
    "zh-hk": "yue-Hant-HK",
    "zh": "cmn-Hans-CN",
    "no-no": "nb-NO",
    "nn-no": "nb-NO",
    "iw-il": "he-IL",
    "tl-ph": "fil-PH",
}


def closest_gather_language(tag: str) -> str:
    """The tag of GATHER_LANGUAGES nearest to ``tag``: itself in Twilio's spelling, an
    alias's meaning, the language's own country (es → es-ES), its first listed
    region, or the nearest spelling."""
    lower = tag.strip().lower().replace("_", "-")
    if lower in _BY_LOWER:
        return _BY_LOWER[lower]
    if lower in _ALIASES:
        return _ALIASES[lower]
    language = lower.split("-")[0]
    same_language = [known for known in GATHER_LANGUAGES if known.lower().split("-")[0] == language]
    for known in same_language:
        if known.lower() == f"{language}-{language}":
            return known
    if same_language:
        preferred = {"en": "en-US", "ar": "ar-SA", "sw": "sw-KE", "ta": "ta-IN", "ur": "ur-PK"}
        return preferred.get(language, same_language[0])
    nearest = difflib.get_close_matches(lower, list(_BY_LOWER), n=1, cutoff=0)
    return _BY_LOWER[nearest[0]]


def validate_gather_language(value: str) -> None:
    """Refuse a tag Twilio's <Gather> does not take, naming the closest one that it does."""
    if value in GATHER_LANGUAGES:
        return
    raise ValidationError(
        _(
            "Twilio's speech recognition does not take “%(value)s”: calls would not hear "
            "the callee. Use a tag from its list, such as “%(closest)s”."
        ),
        code="unsupported_language",
        params={"value": value, "closest": closest_gather_language(value)},
    )


def split_languages(value: str) -> list[str]:
    """The tags of a comma-separated list of languages, in order, blanks and repeats left out."""
    return list(dict.fromkeys(tag.strip() for tag in value.split(",") if tag.strip()))


def validate_extra_languages(value: str) -> None:
    """Refuse a list of languages with one Twilio does not take, naming it and its position."""
    for position, tag in enumerate(split_languages(value), start=1):
        try:
            validate_gather_language(tag)
        except ValidationError as error:
            raise ValidationError(
                _("Language %(position)s of the list: %(problem)s"),
                code="unsupported_language",
                params={"position": position, "problem": " ".join(error.messages)},
            ) from error
