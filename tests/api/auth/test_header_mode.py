"""``CHATBOT_AUTH=header``: the proxy's header counts only from a trusted peer, over real HTTP.

The live backend sees every test connection from 127.0.0.1: trusting 127.0.0.0/8 makes this
test a proxy; trusting only 10.0.0.0/8 (or ::1) makes it an ordinary client.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from chatbot.config import AuthMode, AuthSettings
from tests.api.auth.conftest import StartBackend, acted_for

pytestmark = pytest.mark.slow


def _header_auth(trusted: str, header: str = "X-Forwarded-Email") -> AuthSettings:
    return AuthSettings(auth=AuthMode.HEADER, trusted_proxies=trusted, auth_header=header)


def test_the_header_from_a_trusted_proxy_names_the_user(
    live_backend: StartBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    backend = live_backend(_header_auth("10.0.0.0/8, 127.0.0.0/8"))
    with httpx.Client(base_url=backend.url, timeout=30) as client:
        named = client.get("/v1/conversations", headers={"X-Forwarded-Email": "alice@example.com"})
        assert named.status_code == 200, named.text
        assert acted_for("alice@example.com", "proxy header") in caplog.text
        # A proxy that also passes a bearer of its own (oauth2-proxy's ID token): the header.
        both = client.get(
            "/v1/conversations",
            headers={"X-Forwarded-Email": "alice@example.com", "Authorization": "Bearer x.y.z"},
        )
        assert both.status_code == 200
        bare = client.get("/v1/conversations")
        assert bare.status_code == 401
        assert "X-Forwarded-Email" in bare.json()["error"]["message"]


def test_google_iap_prefix_is_removed(
    live_backend: StartBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    backend = live_backend(_header_auth("127.0.0.1", "X-Goog-Authenticated-User-Email"))
    response = httpx.get(
        backend.url + "/v1/conversations",
        headers={"X-Goog-Authenticated-User-Email": "accounts.google.com:bob@example.com"},
        timeout=30,
    )
    assert response.status_code == 200
    assert acted_for("bob@example.com", "proxy header") in caplog.text
    assert "bob@example.com" not in caplog.text


@pytest.mark.parametrize("trusted", ["10.0.0.0/8", "::1", "192.168.1.7"])
def test_the_header_from_any_other_peer_is_ignored(
    live_backend: StartBackend, caplog: pytest.LogCaptureFixture, trusted: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    backend = live_backend(_header_auth(trusted))
    response = httpx.get(
        backend.url + "/v1/conversations",
        headers={"X-Forwarded-Email": "mallory@example.com"},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "mallory" not in caplog.text


def test_an_unusable_header_value_is_400(live_backend: StartBackend) -> None:
    backend = live_backend(_header_auth("127.0.0.1"))
    response = httpx.get(
        backend.url + "/v1/conversations",
        headers={"X-Forwarded-Email": "accounts.google.com:"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "X-Forwarded-Email" in response.json()["error"]["message"]
