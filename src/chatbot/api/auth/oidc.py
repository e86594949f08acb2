"""OIDC bearer tokens: a JWT checked against the issuer's keys (``CHATBOT_AUTH=oidc``).

The keys come from the issuer's discovery document (``/.well-known/openid-configuration`` ->
``jwks_uri``) through PyJWT's ``PyJWKClient``, which caches them and fetches again when a token
names a key it has not seen (providers rotate keys), at most once per cooldown. The fetches
are blocking HTTP, so they run in a thread with a bounded timeout: a provider that is down
turns into a 503 that says so, never a hang or a 500, and the event loop keeps serving.

Checked: the signature (asymmetric algorithms only, so a public key can never be used as an
HMAC secret), ``iss`` (the discovery document's issuer, which must be the configured one),
``aud`` (``CHATBOT_OIDC_AUDIENCE``), ``exp`` (with a small leeway for clock skew) and ``sub``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKClient

from chatbot.api.auth.failures import AuthFailure, provider_unavailable, unauthenticated
from chatbot.domain.users import User, oidc_user_id

logger = logging.getLogger(__name__)

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY_S = 30
FETCH_TIMEOUT_S = 5.0
JWKS_CACHE_S = 300
RETRY_AFTER_FAILURE_S = 2.0
_NAME_CLAIMS = ("name", "email", "preferred_username")


class OIDCVerifier:
    """Turns a bearer JWT into the :class:`User` it was issued for, or refuses it."""

    def __init__(self, issuer: str, audience: str, *, timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.timeout_s = timeout_s
        self._jwks: PyJWKClient | None = None
        self._token_issuer = self.issuer
        self._lock = asyncio.Lock()
        # After a failed discovery, requests are refused at once for a moment instead of each
        # waiting for the provider in turn.
        self._failed_at = -RETRY_AFTER_FAILURE_S

    async def user_for(self, token: str) -> User:
        client = await self._client()
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                claims = await asyncio.to_thread(self._verify, client, token)
        except TimeoutError:
            raise self._down("its keys did not arrive in time") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("the bearer token has no subject (sub)", "invalid_token")
        name = next((str(claims[c]) for c in _NAME_CLAIMS if claims.get(c)), subject)
        try:
            return User(id=oidc_user_id(self._token_issuer, subject), name=name[:512])
        except ValueError:
            raise unauthenticated(
                "the bearer token's subject is not a usable user id", "invalid_token"
            ) from None

    async def _client(self) -> PyJWKClient:
        """The JWKS client, built from the discovery document on first use (then kept)."""
        async with self._lock:
            if self._jwks is None:
                if time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
                    raise self._down("its discovery document did not load a moment ago")
                try:
                    document = await self._discover()
                except AuthFailure:
                    self._failed_at = time.monotonic()
                    raise
                self._token_issuer = str(document["issuer"])
                self._jwks = PyJWKClient(
                    str(document["jwks_uri"]),
                    cache_keys=True,
                    lifespan=JWKS_CACHE_S,
                    timeout=self.timeout_s,
                )
            return self._jwks

    async def _discover(self) -> dict[str, Any]:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                response = await http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("OIDC discovery at %s failed: %s", url, type(exc).__name__)
            raise self._down(
                f"its discovery document did not load ({type(exc).__name__})"
            ) from None
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise self._down("its discovery document has no jwks_uri")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer:
            logger.error(
                "OIDC discovery: the document's issuer %r is not CHATBOT_OIDC_ISSUER %r",
                issuer,
                self.issuer,
            )
            raise self._down("its discovery document names another issuer than CHATBOT_OIDC_ISSUER")
        return document

    def _verify(self, client: PyJWKClient, token: str) -> dict[str, Any]:
        """Blocking: may fetch the key set. Runs in a thread."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthenticated("the bearer token is not a JWT", "invalid_token") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise unauthenticated(
                "the bearer token is not signed with an asymmetric algorithm", "invalid_token"
            )
        keys = self._keys(client, header.get("kid"))
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self._token_issuer,
                    leeway=LEEWAY_S,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise _refused(exc) from None
        raise unauthenticated(
            "the bearer token's signature does not match the provider's keys", "invalid_token"
        )

    def _keys(self, client: PyJWKClient, kid: object) -> list[PyJWK]:
        try:
            if isinstance(kid, str) and kid:
                return [client.get_signing_key(kid)]
            # No key id (some small providers): try each signing key of the set.
            keys = [k for k in client.get_jwk_set().keys if k.public_key_use in ("sig", None)]
        except jwt.PyJWKClientConnectionError as exc:
            logger.warning("OIDC keys at %s did not load: %s", client.uri, type(exc).__name__)
            raise self._down("its keys (jwks_uri) did not load") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError):
            raise unauthenticated(
                "the bearer token is signed by a key the provider does not publish",
                "invalid_token",
            ) from None
        return keys

    def _down(self, why: str) -> AuthFailure:
        return provider_unavailable(
            f"cannot check the bearer token: the OpenID Connect provider {self.issuer} is not "
            f"answering ({why}); try again shortly, or use an API key"
        )


def _refused(exc: jwt.InvalidTokenError) -> AuthFailure:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return unauthenticated("the bearer token has expired; sign in again", "token_expired")
    if isinstance(exc, jwt.InvalidAudienceError):
        return unauthenticated(
            "the bearer token was issued for another audience (not CHATBOT_OIDC_AUDIENCE)",
            "invalid_token",
        )
    if isinstance(exc, jwt.InvalidIssuerError):
        return unauthenticated(
            "the bearer token was issued by another issuer (not CHATBOT_OIDC_ISSUER)",
            "invalid_token",
        )
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return unauthenticated(f"the bearer token lacks the {exc.claim!r} claim", "invalid_token")
    return unauthenticated(f"the bearer token is invalid ({type(exc).__name__})", "invalid_token")
