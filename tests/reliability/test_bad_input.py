"""Hostile input against a real ``chatbot serve``: fuzzing from /openapi.json and a hand battery.

Every answer is a 4xx that names the problem (or, where the input is legitimate, a 2xx that
keeps it verbatim), never a 5xx, and the server stays ready after each.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from chatbot.errors import InvalidRequestError
from chatbot.store import ConversationStore
from tests.fixtures.servers import BackendProcess
from tests.reliability.support import env_int, record

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}
CAP = 4


@pytest.fixture(scope="module")
def hostile_backend() -> Iterator[BackendProcess]:
    # A tiny reply cap keeps a thousand cases, some of which generate, within CI's budget.
    env = {"CHATBOT_MAX_TOKENS_CAP": str(CAP), "CHATBOT_DEFAULT_MAX_TOKENS": "1"}
    with BackendProcess(env) as backend:
        yield backend


def test_fuzzing_from_openapi_never_gets_a_5xx(hostile_backend: BackendProcess) -> None:
    wanted = env_int("CHATBOT_FUZZ_CASES", 1000)
    schema = schemathesis.openapi.from_url(f"{hostile_backend.url}/openapi.json")
    results: list[Any] = list(schema.get_all_operations())
    operations = [result.ok() for result in results]
    assert len(operations) >= 18
    # Operations without parameters (GET /healthz) run out of distinct cases early: ask more.
    per_operation = -(-wanted * 8 // (5 * len(operations)))
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=per_operation,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(checks=[not_a_server_error], timeout=120)
            statuses[response.status_code] += 1

        run()
    cases = sum(statuses.values())
    ready = httpx.get(f"{hostile_backend.url}/readyz").status_code
    record(
        "fuzz",
        {
            "operations": len(operations),
            "cases": cases,
            "seconds": round(time.monotonic() - started, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "readyz_after": ready,
        },
    )
    assert cases >= wanted, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert ready == 200


def _nested(depth: int) -> bytes:
    return b'{"title": ' + b"[" * depth + b"]" * depth + b"}"


def _messages(count: int, text: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}] * count


def _battery(cid: str) -> list[tuple[str, str, str, Any, int, str]]:
    """(name, method, path, JSON value or raw bytes, expected status, words in the message)."""
    ok = _messages(1, "hi")
    conv = f"/v1/conversations/{cid}"
    return [
        ("invalid UTF-8", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\xff"}]}',
         400, "UTF-8"),
        ("invalid UTF-8 message", "POST", f"{conv}/messages", b'{"content": "\xc3\x28"}',
         400, "UTF-8"),
        ("lone surrogate", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\\udc00"}]}',
         400, "surrogate"),
        ("lone surrogate title", "POST", "/v1/conversations", b'{"title": "a\\ud800"}',
         400, "surrogate"),
        ("raw NUL byte", "POST", CHAT, b'{"messages": [{"role": "user", "content": "a\x00"}]}',
         400, "JSON"),
        ("10 MB body", "POST", CHAT, b'{"messages": "' + b"a" * 10_000_000 + b'"}',
         413, "CHATBOT_MAX_BODY_BYTES"),
        ("100,000 messages", "POST", CHAT, {"messages": _messages(100_000)},
         413, "CHATBOT_MAX_BODY_BYTES"),
        ("1,001 messages", "POST", CHAT, {"messages": _messages(1001, "x")},
         400, "CHATBOT_MAX_MESSAGES"),
        ("20,000 messages import", "POST", "/v1/conversations/import",
         {"format": "openai", "content": json.dumps(_messages(20_000, "x"))},
         400, "limit is 1000"),
        ("JSON nested 10,000 deep", "POST", "/v1/conversations", _nested(10_000),
         400, "deeply"),
        ("JSON nested 10,000 deep chat", "POST", CHAT, b"[" * 10_000 + b"]" * 10_000,
         400, "deeply"),
        ("1 MB message", "POST", f"{conv}/messages", {"content": "a" * 1_000_000},
         400, "CHATBOT_MAX_MESSAGE_CHARS"),
        ("1 MB chat message", "POST", CHAT, {"messages": _messages(1, "a" * 1_000_000)},
         400, "CHATBOT_MAX_MESSAGE_CHARS"),
        ("1 MB title", "POST", "/v1/conversations", {"title": "t" * 1_000_000},
         400, "title"),
        ("max_tokens 0", "POST", CHAT, {"messages": ok, "max_tokens": 0}, 400, "max_tokens"),
        ("max_tokens 1", "POST", CHAT, {"messages": ok, "max_tokens": 1}, 200, ""),
        ("max_tokens cap", "POST", CHAT, {"messages": ok, "max_tokens": CAP}, 200, ""),
        ("max_tokens cap+1", "POST", CHAT, {"messages": ok, "max_tokens": CAP + 1},
         400, "max_tokens"),
        ("max_tokens 2**64", "POST", CHAT, {"messages": ok, "max_tokens": 2**64},
         400, "max_tokens"),
        ("max_completion_tokens 0", "POST", CHAT, {"messages": ok, "max_completion_tokens": 0},
         400, "max_completion_tokens"),
        ("temperature -0.01", "POST", CHAT, {"messages": ok, "temperature": -0.01},
         400, "temperature"),
        ("temperature 0", "POST", CHAT, {"messages": ok, "temperature": 0, "max_tokens": 1},
         200, ""),
        ("temperature 2", "POST", CHAT, {"messages": ok, "temperature": 2, "max_tokens": 1},
         200, ""),
        ("temperature 2.01", "POST", CHAT, {"messages": ok, "temperature": 2.01},
         400, "temperature"),
        ("temperature NaN", "POST", CHAT,
         b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
         400, "temperature"),
        ("top_p 0", "POST", CHAT, {"messages": ok, "top_p": 0}, 400, "top_p"),
        ("top_p 1", "POST", CHAT, {"messages": ok, "top_p": 1, "max_tokens": 1}, 200, ""),
        ("top_p 1.01", "POST", CHAT, {"messages": ok, "top_p": 1.01}, 400, "top_p"),
        ("seed -1", "POST", CHAT, {"messages": ok, "seed": -1}, 400, "seed"),
        ("seed 2**53-1", "POST", CHAT, {"messages": ok, "seed": 2**53 - 1, "max_tokens": 1},
         200, ""),
        ("seed 2**53", "POST", CHAT, {"messages": ok, "seed": 2**53}, 400, "seed"),
        ("seed 2**63", "POST", CHAT, {"messages": ok, "seed": 2**63}, 400, "seed"),
        ("max_tokens '1'", "POST", CHAT, {"messages": ok, "max_tokens": "1"}, 400, "max_tokens"),
        ("max_tokens true", "POST", CHAT, {"messages": ok, "max_tokens": True}, 400,
         "max_tokens"),
        ("n 2", "POST", CHAT, {"messages": ok, "n": 2}, 400, "n"),
        ("limit 0", "GET", "/v1/conversations?limit=0", None, 400, "limit"),
        ("limit 1", "GET", "/v1/conversations?limit=1", None, 200, ""),
        ("limit 200", "GET", "/v1/conversations?limit=200", None, 200, ""),
        ("limit 201", "GET", "/v1/conversations?limit=201", None, 400, "limit"),
        ("limit 10**30", "GET", "/v1/conversations?limit=" + "9" * 30, None, 400, "limit"),
        ("offset -1", "GET", "/v1/conversations?offset=-1", None, 400, "offset"),
        ("offset 10**7", "GET", "/v1/conversations?offset=10000000", None, 200, ""),
        ("offset 10**7+1", "GET", "/v1/conversations?offset=10000001", None, 400, "offset"),
        ("max_new_tokens 0", "POST", "/v1/conversations", {"params": {"max_new_tokens": 0}},
         400, "max_new_tokens"),
        ("max_new_tokens cap", "POST", "/v1/conversations",
         {"params": {"max_new_tokens": CAP}}, 201, ""),
        ("max_new_tokens cap+1", "PATCH", conv, {"params": {"max_new_tokens": CAP + 1}},
         400, "max_new_tokens"),
        ("params temperature 2.5", "PATCH", conv, {"params": {"temperature": 2.5}},
         400, "temperature"),
        ("params seed 2**63", "PATCH", conv, {"params": {"seed": 2**63}}, 400, "seed"),
        ("unknown export format", "GET", f"{conv}/export?format=exe", None, 400, "format"),
        ("unknown message id", "PUT", f"{conv}/messages/nope", {"content": "x"}, 404, "nope"),
        ("unknown conversation", "GET", "/v1/conversations/" + "f" * 10_000, None, 404, ""),
    ]  # fmt: skip


def test_hand_battery_gets_named_4xx_and_the_server_stays_ready(
    hostile_backend: BackendProcess,
) -> None:
    outcomes: dict[str, str] = {}
    with httpx.Client(base_url=hostile_backend.url, timeout=120) as client:
        created = client.post("/v1/conversations", json={"params": {"max_new_tokens": 1}})
        cid = created.json()["id"]
        for name, method, path, body, status, words in _battery(cid):
            if isinstance(body, bytes):
                response = client.request(method, path, content=body, headers=JSON)
            else:
                response = client.request(method, path, json=body)
            assert response.status_code == status, (name, response.text[:500])
            if status >= 400:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}, name
                assert words in error["message"] or words == error["param"], (name, error)
                outcomes[name] = f"{status} {error['message'][:90]}"
            else:
                outcomes[name] = str(status)
            ready = client.get("/readyz")
            assert ready.status_code == 200, (name, ready.text)
    record("bad_input_battery", {"cases": len(outcomes), "outcomes": outcomes})


def test_nul_characters_are_kept_verbatim_or_refused_clearly(
    hostile_backend: BackendProcess,
) -> None:
    """A NUL (\\u0000) is legal JSON text: SQLite keeps it as sent (PostgreSQL: next test)."""
    with httpx.Client(base_url=hostile_backend.url, timeout=120) as client:
        chat = client.post(CHAT, json={"messages": _messages(1, "a\u0000b"), "max_tokens": 1})
        assert chat.status_code == 200, chat.text
        created = client.post(
            "/v1/conversations", json={"title": "t\u0000t", "params": {"max_new_tokens": 1}}
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        sent = client.post(f"/v1/conversations/{cid}/messages", json={"content": "m\u0000m"})
        assert sent.status_code == 200, sent.text
        stored = client.get(f"/v1/conversations/{cid}").json()
        assert stored["title"] == "t\u0000t"
        assert stored["messages"][0]["content"] == "m\u0000m"
        assert client.get("/readyz").status_code == 200


@pytest.mark.postgres
def test_nul_on_postgresql_is_a_400_not_a_retryable_503(postgres_database: str) -> None:
    store = ConversationStore.open(postgres_database)
    try:
        with pytest.raises(InvalidRequestError, match="NUL") as refused:
            store.create_conversation(title="t\u0000t")
        assert refused.value.status_code == 400
        assert store.create_conversation(title="fine").title == "fine"  # the store still works
    finally:
        store.close()
