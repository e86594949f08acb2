"""Per-user API keys: their format and the digest that is stored instead of them.

A key is ``cb-`` plus 32 random bytes (``secrets.token_urlsafe``): the prefix lets a reader (and
a secret scanner) recognise it, and lets the backend tell a key from an OIDC token or another
bearer without a database read. Only the SHA-256 digest is stored. A slow password hash
(bcrypt, argon2) defends low-entropy secrets against guessing once the digests leak; a key with
256 random bits cannot be guessed, so a fast digest is as safe and lets every request look its
key up by an index, which is what makes a revocation take effect at once on every replica.
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "cb-"
DISPLAY_CHARS = 8
"""Characters after the prefix kept in clear for ``chatbot keys list`` (48 of 256 bits)."""
_RANDOM_BYTES = 32


def new_api_key() -> str:
    """A fresh key; shown once, never stored."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def is_api_key(token: str) -> bool:
    """Whether a bearer token is meant as one of our per-user keys (by its prefix)."""
    return token.startswith(API_KEY_PREFIX)


def key_digest(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key shown in listings and accepted by ``chatbot keys revoke``."""
    return key[: len(API_KEY_PREFIX) + DISPLAY_CHARS]
