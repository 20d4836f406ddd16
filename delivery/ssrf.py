"""SSRF guard: webhook URLs must reach public addresses only, unless explicitly allowed.

Names are resolved by :class:`GuardedResolver`, which hands aiohttp only vetted addresses, so the
connection goes to the address we checked (no second lookup an attacker's DNS could answer
differently). IP literals bypass aiohttp's resolver, so :func:`check_url` vets them up front.
Redirects are never followed (the sender passes ``allow_redirects=False``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 well-known prefix: 64:ff9b::a.b.c.d reaches IPv4 a.b.c.d through a translator.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(Exception):
    """The URL's host is, or resolves only to, addresses the guard refuses.

    Deliberately not an OSError: aiohttp would wrap it as a retryable connection error.
    """


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``CPEVENTS_DELIVERY_ALLOWED_NETWORKS`` as networks."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (mapped, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    value = int(address)
    if value >> 32 == 0 and value > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(value)
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be contacted, or None if it may.

    Only globally routable unicast addresses pass (which rules out loopback, private, link-local
    including the cloud metadata service 169.254.169.254, shared, reserved and multicast
    ranges), unless the address (or the IPv4 it hides) is inside an ``allowed`` network.
    """
    inner = embedded_ipv4(address)
    candidates = [address] if inner is None else [inner, address]
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    for candidate in candidates:
        kind = _non_public_kind(candidate)
        if kind is not None:
            where = f"{address} is" if candidate == address else f"{address} hides {candidate}:"
            return f"{where} {kind}"
    return None


def _non_public_kind(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "not a unicast address"
    if not address.is_global:
        return "not a public address"
    return None


def check_url(url: str | URL, allowed: Sequence[IPNetwork] = ()) -> None:
    """Refuse non-http(s) URLs and IP-literal hosts the guard does not allow."""
    parsed = URL(url) if isinstance(url, str) else url
    if parsed.scheme not in ("http", "https"):
        raise BlockedAddressError(f"url: scheme {parsed.scheme!r} is not http or https")
    host = parsed.host
    if not host:
        raise BlockedAddressError("url: has no host")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: vetted at resolution time by GuardedResolver
    reason = refusal(address, allowed)
    if reason is not None:
        raise BlockedAddressError(f"url: {reason}")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops refused addresses and fails if none is left."""

    def __init__(
        self, allowed: Sequence[IPNetwork] = (), base: AbstractResolver | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        self._base = base or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._base.resolve(host, port, family)
        vetted: list[ResolveResult] = []
        reasons: list[str] = []
        for result in results:
            reason = refusal(ipaddress.ip_address(result["host"].split("%")[0]), self._allowed)
            if reason is None:
                vetted.append(result)
            else:
                reasons.append(reason)
        if not vetted:
            raise BlockedAddressError(f"url: {host} resolves only to refused addresses: {reasons}")
        return vetted

    async def close(self) -> None:
        await self._base.close()
