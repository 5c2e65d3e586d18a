"""Requests to URLs that partners choose: resolved once, every address checked, and the
connection made to an address that was checked.

A partner's webhook URL must not make the platform call into its own network (loopback,
private networks, cloud metadata). Checking a name and then letting the HTTP client look
it up again to connect is not enough: the second answer may differ (DNS rebinding), and a
first lookup that fails checks nothing. So ``resolve_destination`` looks the name up once,
refuses it if any address is internal (in any of its IPv6 encodings: IPv4-mapped, NAT64,
6to4...), and ``open_stream`` connects to those addresses only, keeping the name in the
Host header and in TLS (SNI and the certificate's check). docs/security.md, section ssrf.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """The URL leads inside our own network (or nowhere checkable): never retried."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class DestinationUnresolved(Exception):
    """The host name could not be looked up: nothing was sent; a later try may succeed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Destination:
    """A URL and the checked addresses its host stood for when it was looked up."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]


def internal_addresses_allowed() -> bool:
    """Whether internal addresses may be called: in development and tests only (the
    settings refuse WEBHOOK_ALLOW_PRIVATE_ADDRESSES elsewhere; this checks again)."""
    return bool(settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES and settings.DEVELOPMENT)


def resolve_destination(url: str, *, allow_internal: bool | None = None) -> Destination:
    """Look ``url``'s host up once and check every address it has. Raises
    ``DestinationRefused`` when one is internal (unless allowed) or the URL is unusable,
    ``DestinationUnresolved`` when the lookup fails."""
    if allow_internal is None:
        allow_internal = internal_addresses_allowed()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise DestinationRefused(
            _("The URL is not valid: %(error)s") % {"error": error}, code="invalid_url"
        ) from error
    host = parsed.raw_host.decode("ascii")
    if parsed.scheme not in ("http", "https") or not host:
        raise DestinationRefused(
            _("Events are sent only to http:// and https:// URLs with a host."), code="invalid_url"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        # The one lookup: a name in decimal, octal or hex (2130706433, 0x7f.1) comes back
        # as the address the system takes it for, and is checked as that.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise DestinationUnresolved(
            _("The host name %(host)s could not be resolved (%(error)s).")
            % {"host": host, "error": error}
        ) from error
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolved(
            _("The host name %(host)s has no IPv4 or IPv6 address.") % {"host": host}
        )
    if not allow_internal:
        for address in addresses:
            if kind := internal_address_kind(address):
                raise DestinationRefused(_refusal_message(host, address, kind), code="internal")
    return Destination(url=parsed, addresses=tuple(addresses))


def url_refusal(url: str) -> tuple[str, str] | None:
    """Why ``url`` may not be saved as a destination, as (message, code); None if it may.
    Its host is looked up now: a name that does not resolve, or resolves to an internal
    address, is refused. Nothing is checked where internal addresses are allowed."""
    if internal_addresses_allowed():
        return None
    try:
        resolve_destination(url, allow_internal=False)
    except DestinationRefused as refused:
        return refused.message, refused.code
    except DestinationUnresolved as unresolved:
        return unresolved.message, "unresolved"
    return None


@contextmanager
def open_stream(
    client: httpx.Client,
    destination: Destination,
    *,
    method: str,
    content: bytes,
    headers: dict[str, str],
) -> Iterator[httpx.Response]:
    """Send the request to the destination's checked addresses, in order, until one takes
    the connection; never to another address. The Host header and, over HTTPS, the TLS
    server name (SNI and the certificate's check) stay the URL's host. Redirects are the
    client's to refuse (``follow_redirects=False``)."""
    url = destination.url
    host = url.host
    extensions = {}
    if url.scheme == "https" and not _is_address(host):
        extensions["sni_hostname"] = host
    last_error: httpx.ConnectError | None = None
    for address in destination.addresses:
        request = client.build_request(
            method,
            url.copy_with(host=str(address)),
            content=content,
            headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as error:
            last_error = error  # nothing was sent: the next address may take it
            continue
        try:
            yield response
        finally:
            response.close()
        return
    assert last_error is not None
    raise last_error


# --- Address classes ------------------------------------------------------------------------


def internal_address_kind(address: IPAddress) -> str:
    """What kind of internal address ``address`` is, in words (empty: a public one). An
    IPv6 address carrying an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is
    judged by the IPv4 address it leads to."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%")[0])
        if address == ipaddress.IPv6Address("::"):
            return _("an unspecified address")
        if address.is_loopback:
            return _("a loopback address")
        for carrier, encoding in _IPV4_CARRIERS:
            if address in carrier:
                if carried_kind := internal_address_kind(_carried(address, carrier)):
                    return _("the %(encoding)s form of %(kind)s") % {
                        "encoding": encoding,
                        "kind": carried_kind,
                    }
                return ""
        for network, kind in _IPV6_KINDS:
            if address in network:
                return str(kind)
    else:
        for network, kind in _IPV4_KINDS:
            if address in network:
                return str(kind)
    if not address.is_global:
        return _("a reserved address, not on the internet")
    return ""


def _carried(address: ipaddress.IPv6Address, network: ipaddress.IPv6Network) -> IPAddress:
    if network.prefixlen == 16:  # 6to4 carries the IPv4 address in bits 16 to 48
        carried = address.sixtofour
        assert carried is not None
        return carried
    return ipaddress.IPv4Address(address.packed[-4:])


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refusal_message(host: str, address: IPAddress, kind: str) -> str:
    # The address itself is named only when the URL gave it: a partner should not learn
    # what our resolver makes of internal names.
    if _is_address(host):
        return _("Events are not sent to %(host)s: it is %(kind)s.") % {"host": host, "kind": kind}
    return _("Events are not sent to %(host)s: it resolves to %(kind)s.") % {
        "host": host,
        "kind": kind,
    }


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


_IPV4_KINDS = [
    (_net("0.0.0.0/8"), gettext_lazy("an unspecified address")),
    (_net("127.0.0.0/8"), gettext_lazy("a loopback address")),
    (_net("10.0.0.0/8"), gettext_lazy("a private network address")),
    (_net("172.16.0.0/12"), gettext_lazy("a private network address")),
    (_net("192.168.0.0/16"), gettext_lazy("a private network address")),
    (_net("100.64.0.0/10"), gettext_lazy("a shared address (carrier-grade NAT)")),
    (_net("169.254.0.0/16"), gettext_lazy("a link-local address (such as cloud metadata)")),
    (_net("224.0.0.0/4"), gettext_lazy("a multicast address")),
    (_net("240.0.0.0/4"), gettext_lazy("a reserved address, not on the internet")),
]
# IPv6 addresses that lead to an IPv4 address, and what the encoding is called.
_IPV4_CARRIERS = [
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64"),
    (ipaddress.IPv6Network("2002::/16"), "6to4"),
]
_IPV6_KINDS = [
    # Teredo hides its IPv4 destination; local-use NAT64 prefixes lead to whatever the
    # local translator reaches. Neither can be checked.
    (_net("2001::/32"), gettext_lazy("a tunnel address (Teredo) that cannot be checked")),
    (_net("64:ff9b:1::/48"), gettext_lazy("a local NAT64 address that cannot be checked")),
    (_net("fc00::/7"), gettext_lazy("a private network address")),
    (_net("fec0::/10"), gettext_lazy("a private network address")),
    (_net("fe80::/10"), gettext_lazy("a link-local address (such as cloud metadata)")),
    (_net("ff00::/8"), gettext_lazy("a multicast address")),
]
