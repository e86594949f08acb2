"""Response headers that keep the page from fetching anything a message or a reply names.

Streamlit has no setting for response headers; its ASGI ``App`` (Streamlit >= 1.53) takes
Starlette middleware, so :mod:`chatbot.ui.asgi_app` wraps the app with
:class:`SecurityHeaders`. The policy allows only this origin (and ``data:``/``blob:`` for
images, media and fonts Streamlit draws itself): a remote image in Markdown that slipped past
:mod:`chatbot.ui.text` is still not fetched, and nothing is framed by another site.

Sign-in (``CHATBOT_AUTH=oidc``) needs nothing more: the page leaves for ``/auth/login`` by a
top-level navigation, which Streamlit's server redirects to the provider, and the provider's
form posts to the provider's own origin; CSP restricts neither (``form-action`` governs forms on
this app's pages, and it has none that post elsewhere). The browser tests sign in through it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import streamlit
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INDEX_HTML = Path(streamlit.__file__).with_name("static") / "index.html"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: str) -> list[str]:
    """CSP hashes of the page's inline scripts, so none needs ``'unsafe-inline'``."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def content_security_policy(index_html: str) -> str:
    """Same origin only; styles inline because Streamlit's components set them at runtime."""
    scripts = " ".join(["'self'", "'wasm-unsafe-eval'", *inline_script_hashes(index_html)])
    directives = {
        "default-src": "'self'",
        "script-src": scripts,
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data: blob:",
        "media-src": "'self' data: blob:",
        "font-src": "'self' data:",
        "connect-src": "'self'",
        "frame-src": "'self'",
        "worker-src": "'self' blob:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'self'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def security_headers(index_html: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(index_html),
        # A link made from an image URL must not tell that site which conversation it came from.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


class SecurityHeaders:
    """ASGI middleware: adds the headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = (
            headers if headers is not None else security_headers(INDEX_HTML.read_text("utf-8"))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
