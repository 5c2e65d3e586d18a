"""A script injected into an admin page does not run.

Staff pages show data partners and callees wrote (names, transcripts, rejected rows). Were
any of it to slip past escaping, a script in it would act with the staff member's session.
Every page now carries a Content-Security-Policy whose scripts come from this site or carry
the page's nonce; the admin's own inline scripts carry it."""

from __future__ import annotations

import re

import pytest


def _policy(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    directives = (part.split() for part in header.split(";") if part.strip())
    return {words[0]: words[1:] for words in directives}


def _inline_scripts(html: str) -> list[str]:
    """The opening tags of scripts without a src: the ones a policy must allow by nonce."""
    return [tag for tag in re.findall(r"<script\b[^>]*>", html) if " src=" not in tag]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/admin/login/", "/admin/", "/admin/campaigns/campaign/{campaign}/change/"]
)
def test_injected_inline_script_is_not_allowed_on_admin_pages(
    client, admin_user, campaign, path
) -> None:
    if path != "/admin/login/":
        client.force_login(admin_user)

    response = client.get(path.format(campaign=campaign.pk))

    assert response.status_code == 200
    policy = _policy(response)
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts, response.headers.get("Content-Security-Policy")
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "*" not in scripts and "data:" not in scripts
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    # the admin's own inline scripts (the overview's refresh) carry this response's nonce
    nonces = [word[len("'nonce-") : -1] for word in scripts if word.startswith("'nonce-")]
    for tag in _inline_scripts(response.content.decode()):
        assert nonces and f'nonce="{nonces[0]}"' in tag, tag


@pytest.mark.django_db
def test_overview_refresh_script_carries_a_fresh_nonce(client, admin_user) -> None:
    client.force_login(admin_user)

    first, second = client.get("/admin/"), client.get("/admin/")

    tags = _inline_scripts(first.content.decode())
    assert tags, "the overview has its refresh script"
    assert _policy(first)["script-src"] != _policy(second)["script-src"]
