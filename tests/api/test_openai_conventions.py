"""OpenAI's conventions that clients rely on: probes, model names, ``created``, strict numbers.

Each is something a real tool tripped on: guidellm probes ``GET /health``; litellm and
LangChain recognise a context overflow by OpenAI's sentence; a client that names a model we
do not serve must hear so; ``created`` must not change between calls.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.engine.model_source import embedded_gguf_path
from tests.api.conftest import ClientFactory

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "Hi"}]
SERVED = "SmolLM2-135M-Instruct"


def test_health_is_an_alias_of_healthz_and_public(make_client: ClientFactory) -> None:
    client = make_client(api_key="s3cret")
    assert client.get("/health").json() == client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/models").status_code == 401  # the key still guards the rest


def test_unknown_model_is_404_model_not_found(client: TestClient) -> None:
    response = client.post(CHAT, json={"model": "gpt-4o", "messages": HI, "max_tokens": 1})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["param"] == "model"
    assert "gpt-4o" in response.json()["error"]["message"]
    card = client.get("/v1/models/gpt-4o")
    assert card.status_code == 404 and card.json()["error"]["code"] == "model_not_found"
    for named in ({"model": SERVED}, {}):  # the served name, or none at all
        ok = client.post(CHAT, json={**named, "messages": HI, "max_tokens": 1})
        assert ok.status_code == 200, ok.text
        assert ok.json()["model"] == SERVED


def test_configured_aliases_are_served_and_listed(make_client: ClientFactory) -> None:
    client = make_client(model_aliases=["gpt-4o-mini", "gpt-3.5-turbo"])
    listed = [card["id"] for card in client.get("/v1/models").json()["data"]]
    assert listed == [SERVED, "gpt-4o-mini", "gpt-3.5-turbo"]  # the real model first
    assert client.get("/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
    response = client.post(CHAT, json={"model": "gpt-4o-mini", "messages": HI, "max_tokens": 1})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == SERVED  # says which model really answered
    assert client.post(CHAT, json={"model": "gpt-4", "messages": HI}).status_code == 404


def test_created_is_stable_and_the_model_files_time(client: TestClient) -> None:
    first = client.get("/v1/models").json()["data"][0]["created"]
    second = client.get(f"/v1/models/{SERVED}").json()["created"]
    assert first == second == int(embedded_gguf_path().stat().st_mtime)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "8"),
        ("max_tokens", True),
        ("max_tokens", 8.0),
        ("max_completion_tokens", "2"),
        ("temperature", "0.5"),
        ("temperature", True),
        ("top_p", "1"),
        ("seed", "7"),
        ("seed", False),
        ("stream", "true"),
        ("stream", 1),
        ("n", "1"),
    ],
)
def test_numbers_and_booleans_are_strict_on_chat_completions(
    client: TestClient, field: str, value: Any
) -> None:
    response = client.post(CHAT, json={"messages": HI, field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_a_float_field_takes_an_integer(client: TestClient) -> None:
    body = {"messages": HI, "max_tokens": 1, "temperature": 0, "top_p": 1}
    assert client.post(CHAT, json=body).status_code == 200


def test_numbers_and_booleans_are_strict_on_conversations(client: TestClient) -> None:
    for params in ({"max_new_tokens": "8"}, {"temperature": True}, {"seed": "1"}):
        refused = client.post("/v1/conversations", json={"params": params})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"].startswith("params.")
    cid = client.post("/v1/conversations", json={"params": {"temperature": 1}}).json()["id"]
    sent = client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi", "stream": 1})
    assert sent.status_code == 400 and sent.json()["error"]["param"] == "stream"
    seed = client.post("/chat", json={"user_input": 5})
    assert seed.status_code == 400 and seed.json()["error"]["param"] == "user_input"


def test_ignore_eos_runs_to_max_tokens_on_both_apis(client: TestClient) -> None:
    """vLLM's and llama-server's extension, for benchmarks and tests whose subject is length."""
    body = {"messages": HI, "max_tokens": 16, "temperature": 0}
    plain = client.post(CHAT, json=body).json()
    assert plain["choices"][0]["finish_reason"] == "stop"  # "Hi" is answered in fewer
    past = client.post(CHAT, json={**body, "ignore_eos": True}).json()
    assert past["choices"][0]["finish_reason"] == "length"
    assert past["usage"]["completion_tokens"] == 16
    refused = client.post(CHAT, json={**body, "ignore_eos": "yes"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "ignore_eos"
    params = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
    cid = client.post("/v1/conversations", json={"params": params}).json()["id"]
    sent = client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi"}).json()
    assert sent["status"] == "complete" and sent["stats"]["completion_tokens"] == 16


def test_context_overflow_speaks_openais_words_on_openai_routes(
    make_client: ClientFactory,
) -> None:
    client = make_client(limits={"max_message_chars": 1_000_000, "max_body_bytes": 10_000_000})
    text = "word " * 20_000  # far past SmolLM2's 8192-token window
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16}
    response = client.post(CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "context_length_exceeded"
    message = error["message"]
    assert message.startswith("This model's maximum context length is 8192 tokens. However, ")
    prompt = int(message.split("(")[1].split(" in the messages")[0])
    assert f"you requested {prompt + 16} tokens ({prompt} in the messages, 16 in the" in message
    assert message.endswith("Please reduce the length of the messages or completion.")
    # Streaming asks are refused the same way, before the stream starts.
    streamed = client.post(CHAT, json={**body, "stream": True})
    assert streamed.status_code == 400
    assert streamed.json()["error"]["message"] == message
