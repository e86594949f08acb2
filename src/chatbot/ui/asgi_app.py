"""What ``chatbot ui`` runs: the Streamlit app as an ASGI app, with security headers.

``streamlit run`` finds the module-level ``app`` (by reading this file, not importing it) and
serves it with uvicorn, honouring every ``--server.*`` flag as for a plain script. Building the
``App`` loads nothing: the script (:mod:`chatbot.ui.app`) runs per browser session.
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from streamlit.starlette import App

from chatbot.ui.security import SecurityHeaders

app = App(Path(__file__).with_name("app.py"), middleware=[Middleware(SecurityHeaders)])
