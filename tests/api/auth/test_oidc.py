"""OIDC bearer tokens from a real provider (oidc-provider-mock), checked by a real backend.

The provider runs on loopback; its tokens come from its own authorize -> token flow, and the
crafted ones (expired, another issuer) are signed with its own key, so only the claim under
test is wrong. A token signed by another key is refused on its signature.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chatbot.api.auth.failures import AuthFailure
from chatbot.api.auth.oidc import LEEWAY_S, OIDCVerifier
from chatbot.config import AuthMode, AuthSettings
from chatbot.domain.users import oidc_user_id
from tests.api.auth.conftest import LiveBackend, StartBackend, acted_for
from tests.fixtures.engines import run_async
from tests.fixtures.oidc import CLIENT_ID, OIDCProvider

pytestmark = pytest.mark.slow


@pytest.fixture
def oidc_backend(live_backend: StartBackend, oidc_provider: OIDCProvider) -> LiveBackend:
    auth = AuthSettings(
        auth=AuthMode.OIDC, oidc_issuer=oidc_provider.issuer, oidc_audience=CLIENT_ID
    )
    return live_backend(auth)


def _claims(provider: OIDCProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": CLIENT_ID,
        "sub": "crafted",
        "iat": now,
        "exp": now + 600,
    }
    return {**claims, **changes}


def _get(
    backend: LiveBackend, token: str | None, path: str = "/v1/conversations"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(backend.url + path, headers=headers, timeout=30)


def test_a_token_from_the_provider_signs_its_user_in(
    oidc_backend: LiveBackend, oidc_provider: OIDCProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    oidc_provider.set_user("alice", name="Alice Liddell", email="alice@example.com")
    token = oidc_provider.id_token("alice")
    created = httpx.post(
        oidc_backend.url + "/v1/conversations",
        json={"title": "mine"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    assert _get(oidc_backend, token).status_code == 200
    expected = oidc_user_id(oidc_provider.issuer, "alice")
    assert acted_for(expected, "OIDC token") in caplog.text
    backend_log = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert "alice" not in backend_log  # the provider's own log (werkzeug) names its users
    assert token not in caplog.text


def test_a_token_naming_its_key_is_checked_with_that_key(
    oidc_backend: LiveBackend, oidc_provider: OIDCProvider
) -> None:
    token = oidc_provider.sign(_claims(oidc_provider), with_kid=True)
    assert jwt.get_unverified_header(token)["kid"]
    assert _get(oidc_backend, token).status_code == 200


def test_no_token_in_oidc_mode_is_401_with_how_to_sign_in(oidc_backend: LiveBackend) -> None:
    response = _get(oidc_backend, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "OpenID Connect" in response.json()["error"]["message"]
    assert _get(oidc_backend, None, "/healthz").status_code == 200  # probes stay open


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("expired", "token_expired", "expired"),
        ("wrong_audience", "invalid_token", "audience"),
        ("wrong_issuer", "invalid_token", "issuer"),
        ("other_key", "invalid_token", "signature"),
        ("other_key_with_its_kid", "invalid_token", "key"),
        ("not_a_jwt", "invalid_api_key", "sign in"),
        ("hmac_with_the_public_key", "invalid_token", "asymmetric"),
    ],
)
def test_bad_tokens_are_401(
    oidc_backend: LiveBackend, oidc_provider: OIDCProvider, case: str, code: str, words: str
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    token = {
        "expired": lambda: oidc_provider.sign(
            _claims(oidc_provider, iat=now - 3600, exp=now - LEEWAY_S - 60)
        ),
        # The real flow, for another client: the audience is that client's id.
        "wrong_audience": lambda: oidc_provider.id_token("bob", client_id="another-client"),
        "wrong_issuer": lambda: oidc_provider.sign(
            _claims(oidc_provider, iss="https://issuer.example")
        ),
        "other_key": lambda: jwt.encode(_claims(oidc_provider), other_key, algorithm="RS256"),
        "other_key_with_its_kid": lambda: jwt.encode(
            _claims(oidc_provider), other_key, algorithm="RS256", headers={"kid": "not-theirs"}
        ),
        "not_a_jwt": lambda: "opaque-token-value",
        "hmac_with_the_public_key": lambda: jwt.encode(
            _claims(oidc_provider), "the-provider-public-key-as-a-secret", algorithm="HS256"
        ),
    }[case]()
    response = _get(oidc_backend, token)
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == code
    assert words in error["message"]
    assert token not in response.text


def test_the_access_token_of_the_flow_is_not_accepted(
    oidc_backend: LiveBackend, oidc_provider: OIDCProvider
) -> None:
    """The mock's access token is opaque: only JWTs (ID tokens) are checked here."""
    answer = oidc_provider.token_for("carol")
    assert _get(oidc_backend, answer["access_token"]).status_code == 401
    assert _get(oidc_backend, answer["id_token"]).status_code == 200


@pytest.fixture
def silent_provider() -> Iterator[socket.socket]:
    """A listening socket that accepts connections and never answers (a provider that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(60)
        yield sock


def test_a_provider_that_hangs_is_a_quick_503_and_the_loop_keeps_serving(
    live_backend: StartBackend, silent_provider: socket.socket
) -> None:
    issuer = f"http://127.0.0.1:{silent_provider.getsockname()[1]}"
    backend = live_backend(
        AuthSettings(auth=AuthMode.OIDC, oidc_issuer=issuer, oidc_audience=CLIENT_ID)
    )
    token = jwt.encode({"sub": "x"}, rsa.generate_private_key(65537, 2048), algorithm="RS256")
    # The client waits far longer than the verifier's own bound: a 503 here, not a client
    # timeout, is the proof that a hanging provider is cut off by the server.
    with (
        httpx.Client(base_url=backend.url, timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        waiting = pool.submit(
            client.get, "/v1/conversations", headers={"Authorization": f"Bearer {token}"}
        )
        fetch, _ = silent_provider.accept()  # the backend is now waiting on the provider
        with fetch:
            # Answered while the fetch still waits on the provider: the loop is not blocked.
            assert client.get("/healthz").status_code == 200
            assert not waiting.done()
            response = waiting.result()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "oidc_unavailable"
    assert issuer in response.json()["error"]["message"]


def test_a_provider_that_is_down_is_503(oidc_provider: OIDCProvider) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])  # nothing listens once the socket closes
    verifier = OIDCVerifier(f"http://127.0.0.1:{closed}", CLIENT_ID, timeout_s=1)
    token = oidc_provider.id_token("dave")
    for _ in range(2):  # the second is refused at once, without asking again
        with pytest.raises(AuthFailure) as failure:
            run_async(verifier.user_for(token))
        assert failure.value.status == 503


def test_the_verifier_names_the_user_from_the_claims(oidc_provider: OIDCProvider) -> None:
    verifier = OIDCVerifier(oidc_provider.issuer, CLIENT_ID)
    oidc_provider.set_user("erin", email="erin@example.com")
    user = run_async(verifier.user_for(oidc_provider.id_token("erin")))
    assert user.id == f"{oidc_provider.issuer}#erin"
    assert user.name == "erin@example.com"


def test_a_token_of_another_provider_is_401(
    oidc_backend: LiveBackend, start_oidc_provider: Callable[..., OIDCProvider]
) -> None:
    other = start_oidc_provider()
    token = other.id_token("alice")
    response = _get(oidc_backend, token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
