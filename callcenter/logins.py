"""Who is logging in from where, and how long a guesser waits: the client's address and
django-axes' lock-out, shared by the admin's login page and the API's token endpoint.

``client_address`` is the one place the client's address comes from (axes, the API's
throttle). Axes counts failed logins per username and per address in the database (every
web process sees the same counts); past ``LOGIN_FAILURE_LIMIT`` the username or address
is locked, and each further limit's worth of failures doubles the lock (``lockout_period``).
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext as _


def _address(value: str | None) -> str | None:
    """``value`` as a normalised IP address (a port or IPv6 brackets dropped), else None."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):  # [2001:db8::1]:443
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # 203.0.113.7:443
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    """The address of the client, as the proxies we trust saw it.

    With ``TRUSTED_PROXY_COUNT`` = 0 it is the connection's own (``REMOTE_ADDR``). With N,
    it is the Nth address from the right of ``X-Forwarded-For``: each proxy appends the
    address it was connected from, so what lies to the left of the first proxy's entry
    is whatever the client wrote and is never read. A header shorter than N (a request that
    skipped the outer proxies) gives its left-most address, as Django REST framework does.
    """
    remote = _address(request.META.get("REMOTE_ADDR"))
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies == 0 or not forwarded.strip():
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return _address(hops[-min(proxies, len(hops))]) or remote


# --- Lock-out ------------------------------------------------------------------------------
def _live_attempts(*, username: str | None, address: str | None) -> list[AccessAttempt]:
    """The failed-login records of this username or address that have not expired yet."""
    return list(
        AccessAttempt.objects.filter(Q(username=username) | Q(ip_address=address))
        .filter(Q(expiration__isnull=True) | Q(expiration__expires_at__gt=timezone.now()))
        .select_related("expiration")
    )


def _request_parties(request: HttpRequest | None) -> tuple[str | None, str | None]:
    """The username a login request tries and the address it comes from."""
    if request is None:
        return None, None
    address = getattr(request, "axes_ip_address", None) or client_address(request)
    return get_client_username(request), address


def lockout_period(request: HttpRequest | None) -> timedelta:
    """How long a lock lasts after the last failure (axes' ``AXES_COOLOFF_TIME``).

    ``LOGIN_LOCKOUT_MINUTES`` for the first lock of a username or address; each further
    ``LOGIN_FAILURE_LIMIT`` failures while its failures are remembered doubles it, up to
    ``LOGIN_LOCKOUT_MAX_MINUTES``. Failures during a lock count (axes restarts the lock).
    """
    base = timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    ceiling = timedelta(minutes=settings.LOGIN_LOCKOUT_MAX_MINUTES)
    username, address = _request_parties(request)
    if username is None and address is None:
        return base
    attempts = _live_attempts(username=username, address=address)
    failures = max(
        sum(a.failures_since_start for a in attempts if a.username == username),
        sum(a.failures_since_start for a in attempts if a.ip_address == address),
    )
    doublings = max(0, failures // settings.LOGIN_FAILURE_LIMIT - 1)
    # 2**doublings grows fast: past ~40 it is over any ceiling anyway.
    return min(base * 2 ** min(doublings, 40), ceiling)


def lockout_wait(request: HttpRequest) -> int:
    """Seconds until a locked login request may be tried again (at least 1)."""
    username, address = _request_parties(request)
    attempts = _live_attempts(username=username, address=address)
    now = timezone.now()
    wait = timedelta(0)
    for party in ("username", "ip_address"):
        value = username if party == "username" else address
        group = [a for a in attempts if getattr(a, party) == value]
        if sum(a.failures_since_start for a in group) < settings.LOGIN_FAILURE_LIMIT:
            continue
        for attempt in group:
            expiry = getattr(attempt, "expiration", None)
            until = (
                expiry.expires_at
                if expiry is not None
                else attempt.attempt_time + lockout_period(request)
            )
            wait = max(wait, until - now)
    return max(1, math.ceil(wait.total_seconds()))


def lockout_message(wait: int) -> str:
    """The refusal, saying when to try again (rounded up to the minute)."""
    minutes = max(1, math.ceil(wait / 60))
    return _("Too many failed logins. Try again in %(wait)s.") % {
        "wait": timeuntil(timezone.now() + timedelta(minutes=minutes, seconds=1))
    }


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The admin's login page refusal (axes' ``AXES_LOCKOUT_CALLABLE``): 429, Retry-After
    and the wait in words. (Axes' async middleware passes the credentials second: neither
    argument is read.)"""
    wait = lockout_wait(request)
    response = TemplateResponse(
        request,
        "admin/login_locked.html",
        {
            **admin.site.each_context(request),
            "title": _("Log in"),
            "message": lockout_message(wait),
        },
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response.render()


def forget_failures(*, username: str) -> int:
    """Forget a username's failed logins (after it logs in): the address's failures at
    other usernames stay, so a valid account cannot wipe its guesses at others."""
    count, _deleted = AccessAttempt.objects.filter(username=username).delete()
    return count


class LoginAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler, except that a successful login forgets only the user's own
    failures (axes' own reset also forgets every failure of the address)."""

    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        return forget_failures(username=get_client_username(request, credentials))
