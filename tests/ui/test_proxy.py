"""Header mode: the user header survives only from a trusted proxy's address (HTTP and WS)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from chatbot.addresses import TrustedProxies
from chatbot.ui.proxy import TrustedProxyHeader

HEADER = "X-Forwarded-Email"


def _app(trusted: tuple[str, ...]) -> Starlette:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.headers.get(HEADER, "-"))

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.headers.get(HEADER, "-"))
        await websocket.close()

    return Starlette(
        routes=[Route("/", echo), WebSocketRoute("/ws", ws)],
        middleware=[Middleware(TrustedProxyHeader, header=HEADER, proxies=TrustedProxies(trusted))],
    )


@pytest.mark.parametrize(
    ("trusted", "kept"),
    [(("10.0.0.7",), True), (("10.0.0.0/8",), True), (("10.0.0.8",), False), ((), False)],
)
def test_header_kept_only_from_a_trusted_peer(trusted: tuple[str, ...], kept: bool) -> None:
    client = TestClient(_app(trusted), client=("10.0.0.7", 50000))
    expected = "ann@example.com" if kept else "-"
    assert client.get("/", headers={HEADER: "ann@example.com"}).text == expected
    # Streamlit reads st.context.headers from the page's WebSocket: the same rule holds there.
    with client.websocket_connect("/ws", headers={HEADER.lower(): "ann@example.com"}) as ws:
        assert ws.receive_text() == expected


def test_untrusted_peer_cannot_sneak_the_header_in_another_case(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(_app(("10.0.0.1",)), client=("192.168.1.5", 50000))
    assert client.get("/", headers={"x-FORWARDED-email": "mallory"}).text == "-"
    assert "not a trusted proxy" in caplog.text and "mallory" not in caplog.text
