"""Header mode: the user header counts only when it came through a trusted proxy.

Streamlit hands the script the headers of the page's WebSocket (``st.context.headers``) but
not who sent them. The ASGI middleware below sees the peer (``scope["client"]``) of every
request and WebSocket: from a peer outside ``CHATBOT_TRUSTED_PROXIES`` it removes the user
header before Streamlit sees it, so a browser that reaches the UI directly cannot name itself.

The peer is the TCP peer only if uvicorn does not rewrite it from ``X-Forwarded-For``:
``chatbot ui`` turns uvicorn's proxy-header handling off in header mode
(``FORWARDED_ALLOW_IPS`` trusts nobody, see :mod:`chatbot.ui.launcher`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``CHATBOT_TRUSTED_PROXIES`` entries (addresses or CIDR networks) as networks.

    A malformed entry is a :class:`ValueError` naming it, so a typo fails at start.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"CHATBOT_TRUSTED_PROXIES: {entry!r} is not an IP address or network (CIDR)"
            ) from None
    return tuple(networks)


def is_trusted(peer: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether ``peer`` (an address, or None for a Unix socket) is one of the proxies."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class TrustedProxyHeader:
    """ASGI middleware: drop ``header`` from requests whose peer is not a trusted proxy."""

    def __init__(self, app: ASGIApp, header: str, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.networks = networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            if not is_trusted(peer, self.networks):
                headers = scope.get("headers") or []
                kept = [(name, value) for name, value in headers if name.lower() != self.header]
                if len(kept) != len(headers):
                    logger.warning(
                        "ignored the user header from %s: not a trusted proxy "
                        "(CHATBOT_TRUSTED_PROXIES)",
                        peer,
                    )
                    scope = {**scope, "headers": kept}
        await self.app(scope, receive, send)
