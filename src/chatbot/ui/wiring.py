"""Which service the UI talks to: ``HttpChatService`` when a backend URL is set, else in-process.

The service (and with it the model) is built once per Streamlit server process and shared by
every browser session; both transports are thread-safe.
"""

from __future__ import annotations

import logging

import streamlit as st

from chatbot.config import (
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
    UISettings,
    load,
)
from chatbot.service.protocol import ChatServiceProtocol

logger = logging.getLogger(__name__)


def service_from_environment() -> ChatServiceProtocol:
    """The shared service for the settings in ``CHATBOT_*`` (set by ``chatbot ui``)."""
    ui = load(UISettings)
    key = ui.backend_api_key or load(ServerSettings).api_key
    return _shared_service(ui.backend_url, key.get_secret_value() if key else None)


@st.cache_resource(show_spinner="Starting the chat service…")
def _shared_service(backend_url: str | None, api_key: str | None) -> ChatServiceProtocol:
    if backend_url:
        from chatbot.service.http import HttpChatService

        logger.info("UI talks to the backend at %s", backend_url)
        return HttpChatService(backend_url, api_key)
    from chatbot.service.portal import PortalChatService

    logger.info("UI runs the model in process")
    # The model loads in the background: the page shows its progress instead of a spinner.
    return PortalChatService.open(
        load(EngineSettings),
        load(StoreSettings),
        load(LimitSettings),
        load(ServerSettings),
        background=True,
    )
