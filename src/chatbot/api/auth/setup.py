"""Building the authenticator from the settings, and refusing to start with a bad set."""

from __future__ import annotations

import logging

from chatbot.addresses import TrustedProxies, is_loopback
from chatbot.api.auth.oidc import OIDCVerifier
from chatbot.api.auth.resolver import Authenticator, KeyStoreSource
from chatbot.config import AuthMode, AuthSettings, ServerSettings
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)


def build_authenticator(
    server: ServerSettings, auth: AuthSettings, key_store: KeyStoreSource
) -> Authenticator:
    """The authenticator for these settings; ConfigurationError names what is missing."""
    proxies = TrustedProxies(auth.trusted_proxies)
    api_key = server.api_key.get_secret_value() if server.api_key else None
    service_key = auth.service_key.get_secret_value() if auth.service_key else None
    if service_key is not None and service_key == api_key:
        raise ConfigurationError(
            "CHATBOT_SERVICE_KEY must differ from CHATBOT_API_KEY: the service key may act for "
            "any user, the API key is the local user's"
        )
    oidc = None
    if auth.auth is AuthMode.OIDC:
        missing = [
            name
            for name, value in (
                ("CHATBOT_OIDC_ISSUER", auth.oidc_issuer),
                ("CHATBOT_OIDC_AUDIENCE", auth.oidc_audience),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"CHATBOT_AUTH=oidc needs {' and '.join(missing)} (the provider's issuer URL "
                "and the audience its tokens carry, usually the client id)"
            )
        assert auth.oidc_issuer is not None and auth.oidc_audience is not None
        if not auth.oidc_issuer.startswith(("https://", "http://")):
            raise ConfigurationError("CHATBOT_OIDC_ISSUER must be an http(s) URL")
        oidc = OIDCVerifier(auth.oidc_issuer, auth.oidc_audience)
    if auth.auth is AuthMode.HEADER and not proxies:
        raise ConfigurationError(
            "CHATBOT_AUTH=header needs CHATBOT_TRUSTED_PROXIES (the addresses or networks of "
            "the authenticating proxy): the header is honoured only from them"
        )
    if auth.auth is AuthMode.NONE and not is_loopback(server.host):
        logger.warning(
            "CHATBOT_AUTH=none on %s, a non-loopback address: every client shares one user "
            "and sees, changes and deletes the same conversations%s. Set CHATBOT_AUTH=oidc or "
            "header (or per-user API keys with CHATBOT_API_KEY set) to keep users apart.",
            server.host,
            " (all who hold CHATBOT_API_KEY)" if api_key else "",
        )
    return Authenticator(
        auth.auth,
        api_key=api_key,
        service_key=service_key,
        key_store=key_store,
        oidc=oidc,
        proxies=proxies,
        proxy_header=auth.auth_header,
    )
