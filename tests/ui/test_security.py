"""The UI's response headers: a Content-Security-Policy that forbids remote images."""

from __future__ import annotations

import base64
import hashlib

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from chatbot.ui.security import (
    INDEX_HTML,
    SecurityHeaders,
    content_security_policy,
    inline_script_hashes,
    security_headers,
)


def _directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in policy.split("; ")}


def test_policy_allows_this_origin_only() -> None:
    policy = _directives(content_security_policy(INDEX_HTML.read_text("utf-8")))
    assert policy["img-src"] == ["'self'", "data:", "blob:"]
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["object-src"] == ["'none'"]


def test_inline_scripts_are_allowed_by_hash_only() -> None:
    html = "<p>x</p><script>let a = 1</script><script src='s.js'></script>"
    digest = base64.b64encode(hashlib.sha256(b"let a = 1").digest()).decode()
    assert inline_script_hashes(html) == [f"'sha256-{digest}'"]
    assert inline_script_hashes(INDEX_HTML.read_text("utf-8"))  # Streamlit's page has one


def test_middleware_adds_the_headers_and_keeps_a_routes_own() -> None:
    def plain(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    def own(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"Referrer-Policy": "same-origin"})

    app = Starlette(
        routes=[Route("/", plain), Route("/own", own)],
        middleware=[Middleware(SecurityHeaders, headers=security_headers("<script>x</script>"))],
    )
    with TestClient(app) as client:
        response = client.get("/")
        assert "img-src 'self' data: blob:" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/own").headers["referrer-policy"] == "same-origin"
