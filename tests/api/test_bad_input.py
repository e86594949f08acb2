"""The bad-input battery: each a 4xx in the OpenAI error shape that names the problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ClientFactory

CHAT = "/v1/chat/completions"
OK_MESSAGES = '[{"role": "user", "content": "hi"}]'

BATTERY: list[tuple[str, bytes, int, str | None, str]] = [
    ("malformed JSON", b'{"messages": [', 400, None, "not valid JSON"),
    ("not an object", b'"hello"', 400, None, ""),
    (
        "invalid UTF-8",
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        None,
        "UTF-8",
    ),
    (
        "lone surrogate",
        b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}',
        400,
        "messages[0].content",
        "surrogate",
    ),
    ("missing messages", b"{}", 400, "messages", "required"),
    ("empty messages", b'{"messages": []}', 400, "messages", "at least 1"),
    ("wrong type", b'{"messages": "hi"}', 400, "messages", ""),
    (
        "unknown role",
        b'{"messages": [{"role": "wizard", "content": "x"}]}',
        400,
        "messages[0].role",
        "user",
    ),
    (
        "negative max_tokens",
        b'{"messages": ' + OK_MESSAGES.encode() + b', "max_tokens": -5}',
        400,
        "max_tokens",
        "greater than",
    ),
    (
        "enormous max_tokens",
        b'{"messages": ' + OK_MESSAGES.encode() + b', "max_tokens": 99999999999999999999}',
        400,
        "max_tokens",
        "at most 16",
    ),
    (
        "temperature string",
        b'{"messages": ' + OK_MESSAGES.encode() + b', "temperature": "hot"}',
        400,
        "temperature",
        "",
    ),
    ("nesting bomb", b"[" * 50_000, 400, None, "deeply"),
    ("empty stop", b'{"messages": ' + OK_MESSAGES.encode() + b', "stop": [""]}', 400, "stop", ""),
]


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [case[1:] for case in BATTERY],
    ids=[case[0] for case in BATTERY],
)
def test_bad_chat_bodies_get_a_named_4xx(
    client: TestClient, body: bytes, status: int, param: str | None, words: str
) -> None:
    response = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 2),
    ],
)
def test_unsupported_parameters_are_refused_by_name(
    client: TestClient, param: str, value: object
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], param: value}
    response = client.post(CHAT, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["code"] == "unsupported_parameter"


def test_too_many_and_too_long_messages(make_client: ClientFactory) -> None:
    client = make_client(limits={"max_messages": 2, "max_message_chars": 10})
    many = [{"role": "user", "content": "x"}] * 3
    response = client.post(CHAT, json={"messages": many})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    assert "3" in response.json()["error"]["message"]
    long = [{"role": "user", "content": "x" * 11}]
    response = client.post(CHAT, json={"messages": long})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"
    seed = client.post("/chat", json={"user_input": "y" * 11})
    assert seed.status_code == 400 and seed.json()["error"]["param"] == "user_input"


def test_huge_body_is_413_also_when_chunked(make_client: ClientFactory) -> None:
    client = make_client(limits={"max_body_bytes": 2048})
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    response = client.post(CHAT, content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "2048" in response.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b"x" * 1000

    response = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_framework_errors_use_the_same_shape(client: TestClient) -> None:
    unknown = client.get("/no/such/route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    wrong_method = client.delete("/v1/models")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    bad_query = client.get("/v1/conversations", params={"limit": "many"})
    assert bad_query.status_code == 400
    assert bad_query.json()["error"]["param"] == "limit"
    seed_mismatch = client.post(
        "/chat", json={"past_user_inputs": ["a"], "generated_responses": [], "user_input": "b"}
    )
    assert seed_mismatch.status_code == 400
    assert seed_mismatch.json()["error"]["param"] == "generated_responses"


def test_context_overflow_is_400_with_the_numbers(make_client: ClientFactory) -> None:
    client = make_client(limits={"max_message_chars": 1_000_000, "max_body_bytes": 10_000_000})
    text = "word " * 20_000  # far past SmolLM2's 8192-token window
    response = client.post(CHAT, json={"messages": [{"role": "user", "content": text}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "8192" in error["message"]
