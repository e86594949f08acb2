"""Network addresses that decide who is trusted, shared by the backend and the UI.

``CHATBOT_TRUSTED_PROXIES`` are the peers whose identity header is believed (header mode). The
peer is the TCP address uvicorn saw (``scope["client"]``); both servers keep uvicorn from
rewriting it from ``X-Forwarded-For``, so no client can pose as a proxy. A bind address that is
not loopback makes ``CHATBOT_AUTH=none`` worth a warning.

Not under :mod:`chatbot.api`, whose package import builds the FastAPI app the UI does not need.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from chatbot.errors import ConfigurationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Addresses and networks (CIDR), parsed once at start."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"CHATBOT_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                    "(e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8); host names are not accepted"
                ) from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, peer: str | None) -> bool:
        """Whether the connection's peer address is one of the proxies."""
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket or a test client's name
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server to this machine (``localhost`` counts)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may be reached from anywhere
