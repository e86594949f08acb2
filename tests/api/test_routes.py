"""The fast tier: every endpoint family in process over the shared embedded engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from chatbot.api.middleware import PUBLIC_PATHS
from tests.api.conftest import ClientFactory

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "Hi"}]
MODEL = "SmolLM2-135M-Instruct"  # the served name; another is a 404 model_not_found


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_seed_contract(client: TestClient) -> None:
    assert client.get("/").json() == {"status": "OK!"}
    payload = {"past_user_inputs": ["Hello"], "generated_responses": ["Hi!"], "user_input": "Bye"}
    reply = client.post("/chat", json=payload)
    assert reply.status_code == 200
    assert isinstance(reply.json(), str) and reply.json()


def test_models_and_info(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
    assert client.get("/v1/info").json()["deployment"] == "microservices"


def test_completion_reports_usage_and_length(client: TestClient) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 3, "temperature": 0, "seed": 1}
    response = client.post(CHAT, json=body)
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    usage = completion["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3


def test_stop_sequence_ends_with_stop(client: TestClient) -> None:
    # Greedy SmolLM2 answers "Hi" with "Hello! How can I ..."; "!" stops it right away.
    body = {"messages": HI, "max_tokens": 8, "temperature": 0, "stop": ["!"]}
    completion = client.post(CHAT, json=body).json()
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert "!" not in completion["choices"][0]["message"]["content"]


def test_stream_chunks_usage_and_done(client: TestClient) -> None:
    body = {
        "messages": HI,
        "max_tokens": 3,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "unknown_field": "ignored like OpenAI does",
    }
    with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert content


def test_request_timeout_ends_the_stream_with_an_error_event(make_client: ClientFactory) -> None:
    client = make_client(request_timeout_s=0.001)
    body = {"messages": HI, "max_tokens": 16, "temperature": 0, "stream": True}
    with client.stream("POST", CHAT, json=body) as response:
        events = sse_events(response.read().decode())
    last = json.loads(events[-1])
    assert last["error"]["code"] == "request_timeout"
    assert "[DONE]" not in events
    metrics = client.get("/metrics").text
    assert 'chatbot_generations_cancelled_total{reason="timeout"} 1.0' in metrics
    assert "chatbot_requests_in_flight 0.0" in metrics


def test_metrics_count_routes_tokens_and_latency(client: TestClient) -> None:
    client.post(CHAT, json={"messages": HI, "max_tokens": 2, "temperature": 0})
    client.get("/v1/conversations/nope")
    text = client.get("/metrics").text
    assert (
        'chatbot_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/conversations/{conversation_id}",status="404"' in text
    assert 'chatbot_tokens_generated_total{endpoint="chat_completions"} 2.0' in text
    assert 'chatbot_time_to_first_token_seconds_count{endpoint="chat_completions"} 1.0' in text
    assert "chatbot_inter_token_latency_seconds_bucket" in text
    assert "chatbot_tokens_after_cancel_total" in text
    assert "chatbot_requests_queued 0.0" in text
    assert "chatbot_http_requests_active 0.0" in text  # the scrape is a probe: not counted


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    """The app's routes, flattened (FastAPI keeps included routers as nested entries)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _all_routes(inner.routes)
        elif getattr(route, "methods", None):
            yield route


def test_api_key_protects_every_route_but_the_public_ones(make_client: ClientFactory) -> None:
    client = make_client(api_key="s3cret")
    app = client.app
    routes = list(_all_routes(app.routes))  # type: ignore[attr-defined]
    documented = set(app.openapi()["paths"])  # type: ignore[attr-defined]
    walked = {route.path.replace(":path}", "}") for route in routes}
    assert documented <= walked  # nothing escapes the walk
    checked = 0
    for route in routes:
        path = route.path
        for method in sorted(getattr(route, "methods", None) or []):
            if method == "HEAD":
                continue
            url = path.replace("{conversation_id}", "c").replace("{message_id}", "m")
            url = url.replace("{model_id:path}", "m")
            response = client.request(method, url)
            if path in PUBLIC_PATHS:
                assert response.status_code != 401, (method, path)
            else:
                checked += 1
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
    assert checked >= 15
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer s3cres"})
    assert wrong.status_code == 401


def test_cors_is_off_by_default_and_an_allowlist_when_set(make_client: ClientFactory) -> None:
    preflight = {
        "Origin": "http://ui.example",
        "Access-Control-Request-Method": "POST",
    }
    closed = make_client()
    response = closed.options(CHAT, headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    opened = make_client(cors_origins=["http://ui.example"])
    response = opened.options(CHAT, headers=preflight)
    assert response.headers["access-control-allow-origin"] == "http://ui.example"
    other = opened.options(CHAT, headers={**preflight, "Origin": "http://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "*"
    assert "evil" not in other.headers.get("access-control-allow-origin", "")


def test_cors_wildcard_is_refused() -> None:
    import pytest

    from chatbot.api import create_app
    from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
    from chatbot.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"\*"):
        create_app(
            ServerSettings(cors_origins=["*"]), EngineSettings(), StoreSettings(), LimitSettings()
        )


def test_readyz_is_503_while_draining_and_new_work_is_refused(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    client.app.state.runtime.drain.begin()  # type: ignore[attr-defined]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    refused = client.post(CHAT, json={"messages": HI})
    assert refused.status_code == 503
    assert client.get("/healthz").status_code == 200
