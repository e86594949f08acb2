"""Security of a real ``chatbot serve``: the key on every route, CORS, quiet logs, inert text.

The routes are walked from the app itself (built here without its lifespan, so no model), so
a route added later is checked without anyone editing this test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatbot.api import create_app
from chatbot.api.middleware import PUBLIC_PATHS
from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from tests.fixtures.servers import BackendProcess
from tests.reliability.support import record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ALLOWED = "http://ui.example"
EVIL = "http://evil.example"
HOSTILE = [
    "Robert'); DROP TABLE messages;-- \" OR 1=1 --",
    "<script>window.__pwned = 1; alert('xss')</script>",
    '<img src=x onerror="window.__pwned=1"><b>bold?</b> <a href="javascript:alert(1)">x</a>',
    "{{7*7}} ${7*7} %s %n \\x00 ../../etc/passwd",
]


@pytest.fixture(scope="module")
def marker() -> str:
    return f"MARKER{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def secured(marker: str) -> Iterator[BackendProcess]:
    env = {
        "CHATBOT_API_KEY": f"key-{marker}",
        "CHATBOT_CORS_ORIGINS": json.dumps([ALLOWED]),
        "CHATBOT_MAX_TOKENS_CAP": "4",
        "CHATBOT_DEFAULT_MAX_TOKENS": "2",
    }
    with BackendProcess(env) as backend:
        yield backend


def _routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers flattened."""
    app = create_app(ServerSettings(), EngineSettings(), StoreSettings(), LimitSettings())

    def walk(routes: list[Any]) -> Iterator[tuple[str, str]]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes)
                continue
            for method in sorted(getattr(route, "methods", None) or []):
                if method != "HEAD":
                    yield method, route.path

    return sorted(set(walk(app.routes)))


def _concrete(path: str) -> str:
    return (
        path.replace("{conversation_id}", "c1")
        .replace("{message_id}", "m1")
        .replace("{model_id:path}", "m")
    )


def test_every_protected_route_answers_401_without_the_key(
    secured: BackendProcess, marker: str
) -> None:
    key = f"key-{marker}"
    routes = _routes()
    documented = httpx.get(
        f"{secured.url}/openapi.json", headers={"Authorization": f"Bearer {key}"}
    ).json()["paths"]
    walked = {path.replace(":path}", "}") for _, path in routes}
    assert set(documented) <= walked  # the walk sees every documented route, and more
    protected = public = 0
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        for method, path in routes:
            url = _concrete(path)
            bare = client.request(method, url)
            wrong = client.request(method, url, headers={"Authorization": f"Bearer {key}x"})
            if path in PUBLIC_PATHS:
                public += 1
                assert bare.status_code != 401, (method, path)
                continue
            protected += 1
            for response in (bare, wrong):
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
            right = client.request(method, url, headers={"Authorization": f"Bearer {key}"})
            assert right.status_code != 401, (method, path)
    record("auth", {"routes": len(routes), "protected_401": protected, "public": public})
    assert protected >= 18


def test_cors_allowlist_is_honoured(secured: BackendProcess) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        allowed = client.options("/v1/chat/completions", headers={"Origin": ALLOWED, **asked})
        evil = client.options("/v1/chat/completions", headers={"Origin": EVIL, **asked})
        simple = client.get("/healthz", headers={"Origin": ALLOWED})
        simple_evil = client.get("/healthz", headers={"Origin": EVIL})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED
    assert "access-control-allow-origin" not in evil.headers
    assert evil.status_code >= 400
    assert simple.headers.get("access-control-allow-origin") == ALLOWED
    assert "access-control-allow-origin" not in simple_evil.headers
    for response in (allowed, evil, simple, simple_evil):
        origin = response.headers.get("access-control-allow-origin")
        assert origin != "*" or "access-control-allow-credentials" not in response.headers
        assert origin != "*"


def test_hostile_titles_and_messages_are_stored_verbatim_and_nothing_secret_is_logged(
    secured: BackendProcess, marker: str
) -> None:
    key = f"key-{marker}"
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=secured.url, timeout=120, headers=auth) as client:
        kept = 0
        for text in HOSTILE:
            title = f"{text} {marker}-title"
            created = client.post("/v1/conversations", json={"title": title})
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            content = f"{text} {marker}-message"
            sent = client.post(f"/v1/conversations/{cid}/messages", json={"content": content})
            assert sent.status_code == 200, sent.text
            stored = client.get(f"/v1/conversations/{cid}").json()
            assert stored["title"] == title
            assert stored["messages"][0]["content"] == content
            listed = client.get("/v1/conversations", params={"limit": 200}).json()["data"]
            assert title in [c["title"] for c in listed]
            exported = client.get(f"/v1/conversations/{cid}/export", params={"format": "json"})
            assert content in json.loads(exported.text)["messages"][0]["content"]
            kept += 1
        chat = {"messages": [{"role": "user", "content": f"{marker}-chat"}], "max_tokens": 2}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        seed = {"past_user_inputs": [], "generated_responses": [], "user_input": f"{marker}-seed"}
        assert client.post("/chat", json=seed).status_code == 200
        bad = {"messages": [{"role": "wizard", "content": f"{marker}-bad"}]}
        assert client.post("/v1/chat/completions", json=bad).status_code == 400
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {marker}-wrong"})
    log = secured.log_path.read_text(errors="replace")
    assert "POST /v1/conversations" in log  # the log is there, at the default level (INFO)
    leaks = [line for line in log.splitlines() if marker in line]
    record(
        "logs_and_verbatim",
        {"hostile_texts_kept_verbatim": kept, "log_lines": len(log.splitlines()), "leaks": 0},
    )
    assert not leaks, leaks[:5]
