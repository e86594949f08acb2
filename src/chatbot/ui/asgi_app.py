"""What ``chatbot ui`` runs: the Streamlit app as an ASGI app, with its middleware.

``streamlit run`` finds the module-level ``app`` (by reading this file, not importing it) and
serves it with uvicorn, honouring every ``--server.*`` flag as for a plain script. Building the
``App`` loads nothing: the script (:mod:`chatbot.ui.app`) runs per browser session.

Middleware, outermost first: security headers on every response; sign-in failures turned into
a page that explains them (:mod:`chatbot.ui.signin_routes`); in header mode the user header
removed from every peer that is not a trusted proxy (:mod:`chatbot.ui.proxy`).
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from streamlit.starlette import App

from chatbot.addresses import TrustedProxies
from chatbot.config import AuthMode, AuthSettings, load
from chatbot.ui.proxy import TrustedProxyHeader
from chatbot.ui.security import SecurityHeaders
from chatbot.ui.signin_routes import SignInFailures


def middleware(auth: AuthSettings) -> list[Middleware]:
    stack = [Middleware(SecurityHeaders), Middleware(SignInFailures)]
    if auth.auth is AuthMode.HEADER:
        proxies = TrustedProxies(auth.trusted_proxies)
        stack.append(Middleware(TrustedProxyHeader, header=auth.auth_header, proxies=proxies))
    return stack


app = App(Path(__file__).with_name("app.py"), middleware=middleware(load(AuthSettings)))
