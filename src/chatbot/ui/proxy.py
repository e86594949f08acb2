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

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from chatbot.addresses import TrustedProxies

logger = logging.getLogger(__name__)


class TrustedProxyHeader:
    """ASGI middleware: drop ``header`` from requests whose peer is not a trusted proxy."""

    def __init__(self, app: ASGIApp, header: str, proxies: TrustedProxies) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            if not self.proxies.trusts(peer):
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
