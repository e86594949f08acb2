"""Tools through ``/v1/chat/completions`` on the ``openai`` engine: they go upstream as they came.

The upstream is the loopback OpenAI-compatible server of tests/engine/fault_upstream.py, which
answers ``call`` with two calls of the request's first tool, as vLLM streams them (a real
``chatbot serve`` upstream is in tests/scaleout/test_openai_upstreams.py). What matters here:
the upstream sees the client's ``tools``, ``tool_choice`` and messages unchanged, and its calls
reach our client as OpenAI ``tool_calls``, streamed and not.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.api import create_app
from chatbot.config import EngineKind, EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.engine.openai_engine import OpenAIEngine
from tests.engine.fault_upstream import CALL_ARGUMENTS, UpstreamLog, running_upstream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
}
HISTORY = [
    {"role": "system", "content": "You help."},
    {"role": "user", "content": "Weather in Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, UpstreamLog]]:
    with running_upstream() as running:
        yield running


@pytest.fixture
def client(upstream: tuple[str, UpstreamLog], tmp_path: Path) -> Iterator[TestClient]:
    settings = EngineSettings(engine=EngineKind.OPENAI, openai_base_url=upstream[0])
    engine = OpenAIEngine(settings)
    app = create_app(
        ServerSettings(warmup=False),
        settings,
        StoreSettings(data_dir=tmp_path / "data"),
        LimitSettings(),
        engine=engine,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(engine.close)
        yield stack.enter_context(TestClient(app, raise_server_exceptions=False))


def ask(last: str, **body: Any) -> dict[str, Any]:
    return {"messages": [*HISTORY, {"role": "user", "content": last}], "max_tokens": 16, **body}


def check_upstream_saw(log: UpstreamLog, sent: dict[str, Any]) -> None:
    body = log.bodies[-1]
    assert body["tools"] == sent["tools"]
    assert body["tool_choice"] == sent["tool_choice"]
    assert body["messages"] == sent["messages"]  # the history's calls and results as they came


def check_calls(calls: list[dict[str, Any]]) -> None:
    assert len(calls) == 2
    for call in calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == json.loads("".join(CALL_ARGUMENTS))


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
def test_upstream_calls_are_tool_calls(
    client: TestClient, upstream: tuple[str, UpstreamLog], tool_choice: str
) -> None:
    sent = ask("call", tools=[WEATHER], tool_choice=tool_choice)
    response = client.post("/v1/chat/completions", json=sent)
    assert response.status_code == 200, response.text
    check_upstream_saw(upstream[1], sent)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    check_calls(choice["message"]["tool_calls"])


def test_upstream_calls_stream_as_tool_call_deltas(
    client: TestClient, upstream: tuple[str, UpstreamLog]
) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    sent = ask("call", tools=[WEATHER], tool_choice=named, stream=True)
    calls: dict[int, dict[str, Any]] = {}
    reasons: list[str | None] = []
    with client.stream("POST", "/v1/chat/completions", json=sent) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            reasons.append(choice["finish_reason"])
            assert not choice["delta"].get("content")
            for delta in choice["delta"].get("tool_calls", ()):
                call = calls.setdefault(delta["index"], {"function": {"arguments": ""}})
                call.update({k: delta[k] for k in ("id", "type") if k in delta})
                function = delta.get("function", {})
                if "name" in function:
                    call["function"]["name"] = function["name"]
                call["function"]["arguments"] += function.get("arguments", "")
    check_upstream_saw(upstream[1], sent)
    check_calls([calls[index] for index in sorted(calls)])
    assert reasons[-1] == "tool_calls"


def test_plain_answers_stay_text(client: TestClient, upstream: tuple[str, UpstreamLog]) -> None:
    sent = ask("ok", tools=[WEATHER], tool_choice="auto")
    response = client.post("/v1/chat/completions", json=sent)
    assert response.status_code == 200, response.text
    check_upstream_saw(upstream[1], sent)
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == "Hello, world"
    assert choice["finish_reason"] == "stop"
    # the tools are only described to the upstream, never in a system prompt of ours
    assert "# Tools" not in json.dumps(upstream[1].bodies[-1]["messages"])


def test_bad_tools_are_still_a_400_of_ours(
    client: TestClient, upstream: tuple[str, UpstreamLog]
) -> None:
    before = len(upstream[1].bodies)
    sent = ask("call", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}})
    response = client.post("/v1/chat/completions", json=sent)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice"
    assert len(upstream[1].bodies) == before
