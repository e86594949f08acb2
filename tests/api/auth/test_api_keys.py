"""Per-user API keys made by the real CLI, the service key, named users, and quiet logs.

The keys are created, listed and revoked by ``chatbot keys`` in a subprocess on the live
backend's own database; every log of the backend (this process, at DEBUG) and of the CLI (its
stderr, at DEBUG) is searched for the secrets at the end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.parse
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from chatbot.config import AuthMode, AuthSettings
from tests.api.auth.conftest import LiveBackend, StartBackend, acted_for
from tests.fixtures.servers import CHATBOT, ROOT

pytestmark = pytest.mark.slow

API_KEY = "local-api-key-0123456789"
SERVICE_KEY = "service-key-9876543210"


class Cli:
    """``chatbot keys ...`` on a data folder, with every log line it writes kept."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {**os.environ, "CHATBOT_DATA_DIR": str(data_dir), "CHATBOT_LOG_LEVEL": "DEBUG"}
        self.stderr = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CHATBOT), "keys", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.stderr += done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done


def _auth(token: str | None = None, **headers: str) -> dict[str, str]:
    return {**({"Authorization": f"Bearer {token}"} if token else {}), **headers}


@pytest.fixture
def keyed(live_backend: StartBackend) -> LiveBackend:
    """``none`` mode with CHATBOT_API_KEY (so anonymous is refused) and a service key."""
    auth = AuthSettings(auth=AuthMode.NONE, service_key=SecretStr(SERVICE_KEY))
    return live_backend(auth, api_key=API_KEY)


def test_a_key_from_the_cli_works_until_revoked_and_no_secret_is_logged(
    keyed: LiveBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cli = Cli(keyed.data_dir)
    created = cli.run("create", "--user", "alice@example.com", "--name", "Alice")
    key = created.stdout.strip()
    assert key.startswith("cb-") and len(key) > 40
    assert created.stdout.count(key) == 1
    prefix = key[:11]

    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        mine = client.post("/v1/conversations", json={"title": "a"}, headers=_auth(key))
        assert mine.status_code == 201, mine.text
        assert acted_for("alice@example.com", "API key") in caplog.text
        listed = cli.run("list").stdout
        assert prefix in listed and "alice@example.com" in listed and "Alice" in listed
        assert key not in listed
        line = next(row for row in listed.splitlines() if prefix in row)
        assert line.rstrip().endswith("-")  # not revoked

        cli.run("revoke", prefix)
        refused = client.get("/v1/conversations", headers=_auth(key))  # at once: no cache
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "revoked" in refused.json()["error"]["message"]
        listed = cli.run("list").stdout
        line = next(row for row in listed.splitlines() if prefix in row)
        assert not line.rstrip().endswith("-")  # revoked: a date in the last column

        # The other credentials, and refusals of each, all go through the logs too.
        assert client.get("/v1/conversations", headers=_auth(API_KEY)).status_code == 200
        assert client.get("/v1/conversations", headers=_auth(API_KEY + "x")).status_code == 401
        assert client.get("/v1/conversations", headers=_auth(key + "x")).status_code == 401
        served = client.get(
            "/v1/conversations",
            headers=_auth(SERVICE_KEY, **{"X-Chatbot-User": "named-robert@example.com"}),
        )
        assert served.status_code == 200

    assert cli.run("revoke", "no-such-key", check=False).returncode != 0
    logs = caplog.text + cli.stderr
    assert "API key" in logs and "alembic" in logs  # the logs are there, at DEBUG
    for secret in (key, key[11:], API_KEY, SERVICE_KEY, "named-robert@example.com"):
        assert secret not in logs
    # The CLI names the user it made the key for; the server's log never names a user.
    assert "alice@example.com" not in caplog.text


def test_the_service_key_acts_for_the_named_user_only_with_it(
    keyed: LiveBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    name = "José Ñandú"
    user = "https://issuer.example#josé"
    named = {
        "X-Chatbot-User": urllib.parse.quote(user, safe=""),
        "X-Chatbot-User-Name": urllib.parse.quote(name, safe=""),
    }
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        served = client.get("/v1/conversations", headers=_auth(SERVICE_KEY, **named))
        assert served.status_code == 200, served.text
        assert acted_for(user, "service key") in caplog.text

        missing = client.get("/v1/conversations", headers=_auth(SERVICE_KEY))
        assert missing.status_code == 400
        assert "X-Chatbot-User" in missing.json()["error"]["message"]
        assert missing.json()["error"]["code"] == "missing_user"

        bad = client.get(
            "/v1/conversations", headers=_auth(SERVICE_KEY, **{"X-Chatbot-User": "%FF%FE"})
        )
        assert bad.status_code == 400
        assert "percent-encoded" in bad.json()["error"]["message"]

        # Without the service key a named user is never honoured.
        for token in (API_KEY, None, "wrong"):
            refused = client.get("/v1/conversations", headers=_auth(token, **named))
            assert refused.status_code == 401, token
        assert (
            "named_user_not_allowed"
            in client.get("/v1/conversations", headers=_auth(API_KEY, **named)).text
        )
        # ... unless it names the very user the credential is (the UI names its user).
        assert name not in caplog.text and "josé" not in caplog.text
        same = client.get(
            "/v1/conversations", headers=_auth(API_KEY, **{"X-Chatbot-User": "local"})
        )
        assert same.status_code == 200


@pytest.mark.parametrize("mode", [AuthMode.NONE, AuthMode.OIDC, AuthMode.HEADER])
def test_per_user_keys_and_the_service_key_work_in_every_mode(
    live_backend: StartBackend, caplog: pytest.LogCaptureFixture, mode: AuthMode
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatbot.api.auth")
    auth = AuthSettings(
        auth=mode,
        service_key=SecretStr(SERVICE_KEY),
        oidc_issuer="http://127.0.0.1:9",  # never asked: no JWT is sent here
        oidc_audience="chatbot",
        trusted_proxies="10.0.0.0/8",
    )
    backend = live_backend(auth)
    key = Cli(backend.data_dir).run("create", "--user", "carol").stdout.strip()
    with httpx.Client(base_url=backend.url, timeout=30) as client:
        assert client.get("/v1/conversations", headers=_auth(key)).status_code == 200
        served = client.get(
            "/v1/conversations", headers=_auth(SERVICE_KEY, **{"X-Chatbot-User": "dan"})
        )
        assert served.status_code == 200
        anonymous = client.get("/v1/conversations")
        assert anonymous.status_code == (200 if mode is AuthMode.NONE else 401)
        # A key-shaped bearer that is no key is refused even where anonymous is let in.
        assert client.get("/v1/conversations", headers=_auth("cb-unknown")).status_code == 401
        # An OpenAI client's placeholder key is ignored in the open mode, as before.
        placeholder = client.get("/v1/conversations", headers=_auth("EMPTY"))
        assert placeholder.status_code == (200 if mode is AuthMode.NONE else 401)
    assert acted_for("carol", "API key") in caplog.text
    assert acted_for("dan", "service key") in caplog.text


def test_the_terminal_chats_with_a_per_user_key(live_backend: StartBackend) -> None:
    backend = live_backend(AuthSettings(auth=AuthMode.HEADER, trusted_proxies="10.0.0.1"))
    key = Cli(backend.data_dir).run("create", "--user", "erin").stdout.strip()

    def chat(key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
        if key is not None:
            env["CHATBOT_BACKEND_API_KEY"] = key
        return subprocess.run(
            [str(CHATBOT), "chat", "--backend", backend.url, "--max-tokens", "4"],
            cwd=ROOT,
            env=env,
            input="hello\n",
            capture_output=True,
            text=True,
            timeout=120,
        )

    answered = chat(key)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip()
    refused = chat(None)
    # Without a key the terminal shows the backend's reason and goes on (as for any error).
    assert "[error: sign in through the authenticating proxy" in refused.stdout
    assert key not in answered.stderr + refused.stdout + refused.stderr
