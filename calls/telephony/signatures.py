"""Webhooks as Twilio sends them: the signature (X-Twilio-Signature) over a request, and
the connection overrides (`#rc=N`) of a webhook's URL.

Both carriers sign alike, so these functions take the key (`token`) as an argument:
`calls.telephony.sign_request` and `signature_is_valid` pass the backend's. The SDK's
validator comes through the Twilio backend module, the one place that imports twilio.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urldefrag

from django.utils.datastructures import MultiValueDict

from calls.telephony.twilio import RequestValidator


def url_with_retries(url: str, *, retry_count: int = 3) -> str:
    """`url` with Twilio's connection override `#rc=N`: retry a failed webhook N times.

    Other override parameters already in the fragment (`ct`, `rp`, ...) are kept.
    """
    if not 0 <= retry_count <= 5:
        raise ValueError("Twilio accepts a retry count from 0 to 5")
    base, fragment = urldefrag(url)
    parts = [part for part in fragment.split("&") if part and part.split("=", 1)[0] != "rc"]
    return f"{base}#{'&'.join([f'rc={retry_count}', *parts])}"


def compute_signature(
    *, token: str, url: str, params: Mapping[str, str | list[str]], keep_fragment: bool = False
) -> str:
    """The X-Twilio-Signature of a form POST of `params` to `url`, signed with `token`.

    Twilio does not document whether it signs a URL's connection-override fragment
    (`#rc=3`) or not: by default it is left out, with `keep_fragment` it is signed too, so
    that a carrier imitating Twilio can sign either way.
    """
    validator = RequestValidator(token)
    signed = url if keep_fragment else _signed_url(url)
    return validator.compute_signature(signed, _multi_value(params))


def is_valid(
    *, token: str, url: str, params: Mapping[str, str | list[str]], signature: str
) -> bool:
    """Whether `signature` signs a form POST of `params` to `url` with `token`.

    Given the URL with its connection-override fragment, a signature of the URL with or
    without it is accepted (Twilio's documents do not say which it signs; the SDK's
    validator likewise tries with and without the port).
    """
    validator = RequestValidator(token)
    multi = _multi_value(params)
    return any(
        validator.validate(candidate, multi, signature)
        for candidate in dict.fromkeys([url, _signed_url(url)])
    )


def _signed_url(url: str) -> str:
    # A fragment (Twilio's connection overrides) never reaches the server: the URL the
    # server sees.
    return urldefrag(url).url


def _multi_value(params: Mapping[str, str | list[str]]) -> MultiValueDict:
    """`params` with every value a list; the validator reads repeated names by getlist()."""
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return MultiValueDict({name: list(getlist(name)) for name in params})
    return MultiValueDict(
        {
            name: list(value) if isinstance(value, list | tuple) else [value]
            for name, value in params.items()
        }
    )
