"""Trusted proxy addresses (networks, single addresses, IPv6 and IPv4-mapped peers), loopback."""

from __future__ import annotations

import pytest

from chatbot.addresses import TrustedProxies, is_loopback
from chatbot.errors import ConfigurationError


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("10.255.0.1", True),
        ("11.0.0.1", False),
        ("192.168.1.7", True),
        ("192.168.1.8", False),
        ("::ffff:10.0.0.9", True),  # an IPv4 peer on a dual-stack socket
        ("fd00::1", True),
        ("fe80::1", False),
        ("testclient", False),
        (None, False),
    ],
)
def test_peers(peer: str | None, trusted: bool) -> None:
    proxies = TrustedProxies(["10.0.0.0/8", " 192.168.1.7 ", "fd00::/8"])
    assert proxies.trusts(peer) is trusted


def test_nothing_configured_trusts_nobody() -> None:
    assert not TrustedProxies([])
    assert not TrustedProxies([]).trusts("127.0.0.1")


@pytest.mark.parametrize(
    "entry", ["proxy.internal", "10.0.0.0/40", "", "10.0.0.1:80", "10.0.0.300"]
)
def test_bad_entries_fail_with_the_setting_name(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="CHATBOT_TRUSTED_PROXIES"):
        TrustedProxies([entry])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("chat.example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
