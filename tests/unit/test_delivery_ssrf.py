"""The SSRF guard: literals, names resolving to refused addresses, and the allow-list."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from delivery.ssrf import (
    BlockedAddressError,
    GuardedResolver,
    check_url,
    parse_networks,
    refusal,
)

REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba metadata (shared space)
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_refuses_non_public(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_allows_public(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_mapped_address_names_what_it_hides() -> None:
    reason = refusal(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert reason is not None and "127.0.0.1" in reason and "loopback" in reason


def test_allow_list_opens_exactly_its_networks() -> None:
    allowed = parse_networks(["127.0.0.0/8"])
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allowed) is not None
    assert refusal(ipaddress.ip_address("169.254.169.254"), allowed) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "ftp://example.com/",
        "file:///etc/passwd",
    ],
)
def test_check_url_refuses_literals_and_schemes(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url)


def test_check_url_leaves_names_to_the_resolver() -> None:
    check_url("https://example.com/hook")
    check_url("http://127.0.0.1:9/", parse_networks(["127.0.0.0/8"]))


class _FixedDNS(AbstractResolver):
    """A DNS answer we choose, standing in for an attacker-controlled zone."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self._answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self._answers[host]
        ]

    async def close(self) -> None:
        return None


async def test_localhost_name_is_refused() -> None:
    # The system resolver, for real: localhost resolves to loopback.
    with pytest.raises(BlockedAddressError, match="loopback"):
        await GuardedResolver().resolve("localhost", 80, socket.AF_UNSPEC)


async def test_localhost_allowed_when_listed() -> None:
    resolver = GuardedResolver(parse_networks(["127.0.0.0/8", "::1/128"]))
    results = await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    assert results and all(ipaddress.ip_address(r["host"]).is_loopback for r in results)


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.7"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["fe80::1"], ["192.168.0.2"]],
)
async def test_names_resolving_to_refused_addresses(answer: list[str]) -> None:
    resolver = GuardedResolver(base=_FixedDNS({"evil.example": answer}))
    with pytest.raises(BlockedAddressError, match=r"evil\.example"):
        await resolver.resolve("evil.example", 443)


async def test_mixed_answers_keep_only_vetted_addresses() -> None:
    resolver = GuardedResolver(base=_FixedDNS({"mixed.example": ["127.0.0.1", "93.184.216.34"]}))
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


def test_sender_vets_each_url_once_and_keeps_refusing() -> None:
    from delivery.config import DeliveryConfig
    from delivery.sender import Sender
    from plumbing.settings import Settings

    settings = Settings(delivery_allowed_networks=("127.0.0.0/8",))
    sender = Sender(DeliveryConfig.from_settings(settings))
    allowed = sender._vet("http://127.0.0.1:8080/hook")
    assert allowed.port == 8080
    assert sender._vet("http://127.0.0.1:8080/hook") is allowed  # cached
    for _ in range(2):  # the cached refusal refuses as the first check did
        with pytest.raises(BlockedAddressError, match="private"):
            sender._vet("http://10.0.0.1/hook")
