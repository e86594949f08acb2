"""Who a request acts for: the rules of ``CHATBOT_AUTH``, in one place.

In order, the first that applies decides:

1. ``Authorization: Bearer`` with the service key (``CHATBOT_SERVICE_KEY``): the user named by
   ``X-Chatbot-User`` (400 without it). Only this key may name another user.
2. The ``CHATBOT_API_KEY``: the local user.
3. A per-user key (``cb-...``): its user; unknown or revoked is 401, in every mode.
4. ``oidc`` mode and a JWT: the verified token's user (issuer + subject); any failed check is
   401, an unreachable provider 503.
5. ``header`` mode, the TCP peer in ``CHATBOT_TRUSTED_PROXIES`` and the header
   (``CHATBOT_AUTH_HEADER``) set: that user. From any other peer the header is ignored.
6. ``none`` mode without ``CHATBOT_API_KEY``: the local user (an unknown bearer is ignored,
   as OpenAI clients always send one).
7. Otherwise 401.

``X-Chatbot-User`` without the service key is honoured never: it is refused (401) unless it
names the very user the credentials already gave (the UI names its user on every call).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable

from starlette.types import Scope

from chatbot.addresses import TrustedProxies
from chatbot.api.auth.failures import AuthFailure, bad_identity, not_ready, unauthenticated
from chatbot.api.auth.headers import RequestIdentity, named_user, proxy_user, read_identity
from chatbot.api.auth.oidc import OIDCVerifier
from chatbot.config import AuthMode
from chatbot.domain.api_keys import is_api_key
from chatbot.domain.users import LOCAL_USER, User
from chatbot.errors import UnavailableError
from chatbot.store.api_keys import ApiKeyStore

logger = logging.getLogger(__name__)

KeyStoreSource = Callable[[], ApiKeyStore | None]


class Authenticator:
    """Resolves the :class:`User` of a request, or raises :class:`AuthFailure`."""

    def __init__(
        self,
        mode: AuthMode,
        *,
        api_key: str | None,
        service_key: str | None,
        key_store: KeyStoreSource,
        oidc: OIDCVerifier | None,
        proxies: TrustedProxies,
        proxy_header: str,
    ) -> None:
        self.mode = mode
        self._api_key = api_key.encode() if api_key else None
        self._service_key = service_key.encode() if service_key else None
        self._key_store = key_store
        self._oidc = oidc
        self._proxies = proxies
        self.proxy_header = proxy_header

    @property
    def open_to_anonymous(self) -> bool:
        """Whether a request without credentials is let in (as the local user)."""
        return self.mode is AuthMode.NONE and self._api_key is None

    async def user_for(self, scope: Scope) -> User:
        identity = read_identity(scope, self.proxy_header)
        if identity.bearer is not None and _same(identity.bearer, self._service_key):
            if identity.named_user is None:
                raise bad_identity(
                    "the service key acts for a named user: send X-Chatbot-User "
                    "(the percent-encoded user id)",
                    "missing_user",
                )
            user = named_user(identity)
            logger.debug("request acts for user %s (service key)", log_ref(user))
            return user
        user, how = await self._credentials(identity)
        if identity.named_user is not None and named_user(identity).id != user.id:
            raise unauthenticated(
                "X-Chatbot-User may name another user only with the service key "
                "(CHATBOT_SERVICE_KEY)",
                "named_user_not_allowed",
            )
        logger.debug("request acts for user %s (%s)", log_ref(user), how)
        return user

    async def _credentials(self, identity: RequestIdentity) -> tuple[User, str]:
        bearer = identity.bearer
        if bearer is not None:
            if _same(bearer, self._api_key):
                return LOCAL_USER, "CHATBOT_API_KEY"
            if is_api_key(bearer):
                return await self._key_user(bearer), "API key"
            if self.mode is AuthMode.OIDC and self._oidc is not None and bearer.count(".") == 2:
                return await self._oidc.user_for(bearer), "OIDC token"
        if (
            self.mode is AuthMode.HEADER
            and identity.proxy_value is not None
            and self._proxies.trusts(identity.peer)
        ):
            return proxy_user(identity.proxy_value, self.proxy_header), "proxy header"
        if self.open_to_anonymous:
            return LOCAL_USER, "CHATBOT_AUTH=none"
        raise unauthenticated(self._how_to_sign_in(bearer is not None))

    async def _key_user(self, key: str) -> User:
        store = self._key_store()
        if store is None:
            raise not_ready("the server is still starting (API keys not loaded); retry shortly")
        try:
            user = await asyncio.to_thread(store.user_for, key)
        except UnavailableError as exc:
            raise AuthFailure(
                503, exc.message, "database_unavailable", "service_unavailable"
            ) from None
        if user is None:
            raise unauthenticated(
                "unknown or revoked API key; create one with 'chatbot keys create'"
            )
        return user

    def _how_to_sign_in(self, sent_bearer: bool) -> str:
        if self.mode is AuthMode.OIDC:
            return (
                "sign in: send 'Authorization: Bearer <token>' with an ID token from the "
                "OpenID Connect provider (CHATBOT_OIDC_ISSUER), or an API key"
            )
        if self.mode is AuthMode.HEADER:
            return (
                "sign in through the authenticating proxy (it sets "
                f"{self.proxy_header}), or send 'Authorization: Bearer <API key>'"
            )
        return "missing or wrong API key: send 'Authorization: Bearer <key>'"


def log_ref(user: User) -> str:
    """How logs name a user: a short digest of the id (ids are e-mails; logs keep none)."""
    return hashlib.sha256(user.id.encode()).hexdigest()[:12]


def _same(given: str, expected: bytes | None) -> bool:
    """Constant-time comparison with a configured key (False when none is configured)."""
    return expected is not None and hmac.compare_digest(given.encode("latin-1"), expected)
