"""Streamlit's sign-in routes: each failure becomes ``/?signin_error=<reason>``, kept cookies."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from chatbot.ui.signin_routes import SignInFailures, failure_reason


def _streamlit_like() -> Starlette:
    """The answers Streamlit's own routes give (see starlette_auth_routes)."""

    async def login(request: Request) -> Response:
        if request.query_params.get("provider") == "down":
            return PlainTextResponse("Authentication error", status_code=400)
        return RedirectResponse("http://idp.example/authorize?x=1", status_code=302)

    async def callback(request: Request) -> Response:
        response = RedirectResponse("/", status_code=302)
        if request.query_params.get("code") == "good":
            response.set_cookie("_streamlit_user", "signed")
        else:
            response.delete_cookie("_streamlit_user")
        return response

    return Starlette(
        routes=[Route("/app/auth/login", login), Route("/app/oauth2callback", callback)],
        middleware=[Middleware(SignInFailures)],
    )


def _get(path: str) -> Response:
    client = TestClient(_streamlit_like(), follow_redirects=False)
    return client.get(path)  # type: ignore[return-value]


def test_provider_down_at_login() -> None:
    response = _get("/app/auth/login?provider=down")
    assert response.status_code == 302
    assert response.headers["location"] == "/app/?signin_error=provider_unreachable"
    assert response.content == b""


def test_successful_steps_pass_untouched() -> None:
    assert _get("/app/auth/login?provider=ok").headers["location"].startswith("http://idp.")
    signed = _get("/app/oauth2callback?code=good&state=s")
    assert (
        signed.headers["location"] == "/"
        and "_streamlit_user=signed" in signed.headers["set-cookie"]
    )
    # Back from the provider's sign-out page: no code, no error; not a failed sign-in.
    assert _get("/app/oauth2callback").headers["location"] == "/"


def test_provider_error_and_failed_exchange_keep_the_cookie_clearing() -> None:
    denied = _get("/app/oauth2callback?error=access_denied&state=s")
    assert denied.headers["location"] == "/app/?signin_error=access_denied"
    assert "_streamlit_user=" in denied.headers["set-cookie"]  # Streamlit's clearing is kept
    failed = _get("/app/oauth2callback?code=bad&state=s")
    assert failed.headers["location"] == "/app/?signin_error=exchange_failed"


def test_odd_error_codes_are_not_echoed() -> None:
    assert failure_reason("/oauth2callback", "error=<script>", 302, []) == "error"
