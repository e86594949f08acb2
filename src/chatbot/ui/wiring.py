"""Which service the UI talks to: ``HttpChatService`` when a backend URL is set, else in-process.

The service (and with it the model) is built once per Streamlit server process and shared by
every browser session; both transports are thread-safe. Each script run binds it to the
signed-in user with ``for_user`` (see :mod:`chatbot.ui.app`).

Over HTTP with users (``CHATBOT_AUTH`` oidc or header) the UI sends ``CHATBOT_SERVICE_KEY`` as
its bearer and names the user on every call; the backend honours the named user only with that
key. Without it every user would act as the key's one user, so the UI refuses to start.
"""

from __future__ import annotations

import logging

import streamlit as st

from chatbot.config import (
    AuthMode,
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
    UISettings,
    load,
)
from chatbot.errors import ConfigurationError
from chatbot.service.protocol import ChatServiceProtocol

logger = logging.getLogger(__name__)


def service_from_environment() -> ChatServiceProtocol:
    """The shared service for the settings in ``CHATBOT_*`` (set by ``chatbot ui``)."""
    ui = load(UISettings)
    return _shared_service(ui.backend_url, backend_key(ui, load(AuthSettings)))


def backend_key(ui: UISettings, auth: AuthSettings) -> str | None:
    """The bearer the UI sends: the service key when it has one (required with users),
    else ``CHATBOT_BACKEND_API_KEY`` or ``CHATBOT_API_KEY``."""
    if auth.service_key is not None:
        return auth.service_key.get_secret_value()
    if ui.backend_url and auth.auth is not AuthMode.NONE:
        raise ConfigurationError(
            f"CHATBOT_AUTH={auth.auth.value} with a backend needs CHATBOT_SERVICE_KEY (the same "
            "value on the UI and the backend): with it the UI acts for each signed-in user."
        )
    key = ui.backend_api_key or load(ServerSettings).api_key
    return key.get_secret_value() if key else None


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
