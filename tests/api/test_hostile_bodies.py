"""Hostile bodies against every route of the app: a 4xx that names the problem, never a 5xx.

The routes are walked from the app itself, so a new route is covered without editing this file.
The imports' own checks (sizes, characters, the title cap, CSV limits) and the exact round trip
of our own CSV export are here too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.store.models import MAX_TITLE_CHARS
from tests.api.conftest import ClientFactory
from tests.reliability.support import record

BIG_INT = b"1" * 5000  # past Python's 4,300-digit limit for int(str)
DEEP_OK = b"[" * 900 + b"]" * 900  # parses, but is no field's type
FIELDS = (
    "content",
    "title",
    "system_prompt",
    "params",
    "messages",
    "user_input",
    "format",
    "stream",
    "max_tokens",
    "temperature",
    "seed",
    "limit",
)
VALUES = (BIG_INT, b"-" + BIG_INT, b"NaN", b"Infinity", b"-Infinity", b"1e999", DEEP_OK)
WHOLE_BODIES = (
    BIG_INT,
    b"NaN",
    b"[" * 50_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    DEEP_OK,
    b'{"\\ud800": 1}',
    b'{"content": "\\udfff", "title": "\\ud83d"}',
    b'{"content": "\xff\xfe"}',
    b'{"content": "a\x00b"}',
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"{",
    b'{"content": "x", "content": 1}',
)


def _hostile_bodies() -> list[bytes]:
    bodies = list(WHOLE_BODIES)
    for field in FIELDS:
        for value in VALUES:
            bodies.append(b'{"' + field.encode() + b'": ' + value + b"}")
        # Inside an otherwise valid-looking body, so a model does not refuse it first.
        bodies.append(
            b'{"messages": [{"role": "user", "content": "hi"}], "content": "hi", "'
            + field.encode()
            + b'": '
            + BIG_INT
            + b"}"
        )
    bodies.append(b'{"params": {"max_new_tokens": ' + BIG_INT + b"}}")
    bodies.append(b'{"params": {"temperature": NaN}}')
    bodies.append(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}')
    return bodies


def _routes(routes: list[Any]) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, included routers flattened."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
            continue
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                yield method, route.path


def _path(template: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        template = template.replace("{" + name + "}", value)
    return template


@pytest.mark.slow
def test_every_route_answers_hostile_bodies_with_a_4xx(make_client: ClientFactory) -> None:
    client = make_client(limits={"max_tokens_cap": 4, "default_max_tokens": 1})
    created = client.post("/v1/conversations", json={"title": "target"}).json()
    sent = client.post(f"/v1/conversations/{created['id']}/messages", json={"content": "hi"})
    assert sent.status_code == 200, sent.text
    conversation = client.get(f"/v1/conversations/{created['id']}").json()
    ids = {"conversation_id": created["id"], "message_id": conversation["messages"][0]["id"]}
    routes = sorted(set(_routes(client.app.routes)))  # type: ignore[attr-defined]
    assert len(routes) >= 18
    tried = 0
    statuses: dict[int, int] = {}
    for method, template in routes:
        path = _path(template, ids)
        if True:
            if method == "DELETE":
                continue  # would remove the target; it takes no body anyway
            if method == "GET":
                for query in (b"limit=" + BIG_INT, b"offset=" + BIG_INT, b"format=\xff"):
                    response = client.get(path + "?" + query.decode("latin-1"))
                    tried += 1
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    assert response.status_code < 500, (method, path, query[:40], response.text)
                continue
            for body in _hostile_bodies():
                response = client.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
                tried += 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (method, path, body[:60], response.text)
                if response.status_code >= 400:
                    error = response.json()["error"]
                    assert error["message"] and error["type"], response.text
    assert tried > 500, tried
    record("hostile_bodies", {"routes": len(routes), "requests": tried, "statuses": statuses})
    assert client.get("/healthz").status_code == 200
    # No hostile body changed the target conversation.
    after = client.get(f"/v1/conversations/{created['id']}").json()
    assert after["title"] == "target"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + BIG_INT + b"}",
            "digits",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": Infinity}', "Infinity"),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1e999}', "Infinity"),
    ],
    ids=["5000-digit integer", "Infinity", "1e999"],
)
def test_numbers_json_cannot_carry_are_a_named_400(
    client: TestClient, body: bytes, words: str
) -> None:
    response = client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert error["code"] in ("invalid_number",)


def _import(client: TestClient, fmt: str, content: str) -> Any:
    return client.post("/v1/conversations/import", json={"format": fmt, "content": content})


def _file(**fields: Any) -> str:
    payload = {"messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("fmt", "content", "words"),
    [
        ("csv", 'is_user,text\nTrue,"' + "x" * 200_000 + '"\n', "field"),
        ("csv", "is_user,text\nTrue,a\rb\n", "columns"),
        ("csv", "is_user,text\nTrue," + "x" * 1001 + "\n", "message 1 has 1001 characters"),
        ("json", "[" * 100_000, "too deeply"),
        ("json", '{"messages": [], "params": {"seed": ' + "9" * 5000 + "}}", "digits"),
        ("json", _file(params={"temperature": float("nan")}), "temperature"),
        ("json", '[{"role": "user", "content": "a\\ud800"}]', "surrogate"),
        ("json", _file(title="\udfff"), "surrogate"),
        ("json", _file(system_prompt="\ud83d"), "surrogate"),
        ("json", _file(title="t" * (MAX_TITLE_CHARS + 1)), "title"),
        ("json", _file(system_prompt="s" * 1001), "system_prompt"),
        ("json", json.dumps([{"role": "user", "content": "m"}] * 11), "limit is 10"),
        ("json", _file(params={"max_new_tokens": 100}), "max_new_tokens"),
        ("openai", '[{"role": "user", "content": 5}]', "content"),
    ],
    ids=[
        "CSV field past the csv limit",
        "CSV bare CR outside quotes",
        "CSV message too long",
        "JSON nested too deep",
        "JSON 5000-digit integer",
        "JSON NaN parameter",
        "JSON lone surrogate in a message",
        "JSON lone surrogate in the title",
        "JSON lone surrogate in the system prompt",
        "JSON title past the cap",
        "JSON system prompt too long",
        "JSON too many messages",
        "JSON reply length past the cap",
        "OpenAI content not text",
    ],
)
def test_imports_are_held_to_the_live_routes_rules(
    make_client: ClientFactory, fmt: str, content: str, words: str
) -> None:
    client = make_client(
        limits={"max_message_chars": 1000, "max_messages": 10, "max_body_bytes": 10_000_000}
    )
    response = _import(client, fmt, content)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"], response.text
    assert client.get("/v1/conversations").json()["data"] == []


TRICKY_TEXTS = [
    "a bare\rCR",
    "CRLF\r\nand LF\nand CR\r",
    '=HYPERLINK("http://evil", "click")',
    "+1+2",
    "-3",
    "@SUM(A1)",
    "\tTab first",
    "\rCR first",
    "'quoted already",
    "'=both",
    "''two quotes",
    'comma, "quotes", ;semicolon',
    "",
]


def test_our_csv_neutralises_formulas_and_round_trips_exactly(client: TestClient) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(TRICKY_TEXTS)
    ]
    original = _import(client, "json", json.dumps({"title": "tricky", "messages": messages}))
    assert original.status_code == 201, original.text
    cid = original.json()["id"]
    exported = client.get(f"/v1/conversations/{cid}/export", params={"format": "csv"}).text
    cells = [row[1] for row in csv.reader(io.StringIO(exported, newline=""))][1:]
    for cell in cells:  # what a spreadsheet sees: no cell starts a formula
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert cells[2].startswith("'=HYPERLINK")
    back = _import(client, "csv", exported)
    assert back.status_code == 201, back.text
    assert [m["content"] for m in back.json()["messages"]] == TRICKY_TEXTS
    assert [m["role"] for m in back.json()["messages"]] == [m["role"] for m in messages]
