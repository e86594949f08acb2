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

from chatbot.ui.proxy import TrustedProxyHeader, is_trusted, proxy_networks

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
        middleware=[
            Middleware(TrustedProxyHeader, header=HEADER, networks=proxy_networks(trusted))
        ],
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


def test_peer_matching() -> None:
    networks = proxy_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert is_trusted("127.0.0.1", networks)
    assert is_trusted("::ffff:10.1.2.3", networks)  # IPv4 peer on a dual-stack socket
    assert is_trusted("fd00::5", networks)
    assert not is_trusted("127.0.0.2", networks)
    assert not is_trusted(None, networks) and not is_trusted("unix-socket", networks)


def test_malformed_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        proxy_networks(["10.0.0.300"])
