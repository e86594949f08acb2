"""A replay of the requests Open WebUI sends for one chat, against a real ``chatbot serve``.

Shapes read from Open WebUI's source (backend/open_webui): ``utils/middleware.py`` attaches
every resolved tool natively as ``tools: [{"type": "function", "function": spec}]`` with no
``tool_choice`` and streams the chat; its loop gathers ``delta.tool_calls`` by index, runs the
tools and sends the history back with the assistant's ``tool_calls`` and one ``tool`` message
per result. ``routers/tasks.py`` sends the title, follow-up and tags tasks as one user message
(a "### Task ... ### Output: JSON format ... <chat_history>" prompt), ``stream: false``, a
``metadata`` object, and for the title ``max_completion_tokens: 1000``. The built-in tools'
specs come from ``tools/builtin.py`` function signatures (optional arguments as
``anyOf [..., null]``). Texts here are shortened; field names and nesting are Open WebUI's.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import BackendProcess

pytestmark = pytest.mark.slow


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


OPTIONAL_INT = {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
BUILTIN_TOOLS = [
    _spec("get_current_timestamp", "Get the current Unix timestamp in seconds.", {}, []),
    _spec(
        "calculate_timestamp",
        "Get the current Unix timestamp, optionally adjusted by days, weeks, months, or years.",
        {
            "days_ago": {"type": "integer", "default": 0, "description": "Days to subtract"},
            "weeks_ago": {"type": "integer", "default": 0, "description": "Weeks to subtract"},
            "months_ago": {"type": "integer", "default": 0, "description": "Months to subtract"},
            "years_ago": {"type": "integer", "default": 0, "description": "Years to subtract"},
        },
        [],
    ),
    _spec(
        "search_web",
        "Search the public web for information.",
        {
            "query": {"type": "string", "description": "The search query to look up"},
            "count": {**OPTIONAL_INT, "description": "Number of results to return"},
        },
        ["query"],
    ),
    _spec(
        "fetch_url",
        "Fetch and extract the main text content from a web page URL.",
        {"url": {"type": "string", "description": "The URL to fetch content from"}},
        ["url"],
    ),
    _spec(
        "generate_image",
        "Generate an image based on a text prompt.",
        {"prompt": {"type": "string", "description": "A detailed description of the image"}},
        ["prompt"],
    ),
]
METADATA = {"chat_id": "c0ffee", "message_id": "m1", "session_id": "s1", "task": None}
USER_TURN = {"role": "user", "content": "What time is it now?"}


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.read()
    chunks = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
    return chunks


def _gather(chunks: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]], str | None]:
    """What Open WebUI's stream loop builds: the text, the calls by index, the finish reason."""
    text, calls, reason = "", {}, None
    for chunk in chunks:
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            reason = choice.get("finish_reason") or reason
    return text, calls, reason


def test_a_native_tool_chat_streams_then_answers_the_tool_results(
    tools_backend: BackendProcess,
) -> None:
    url = f"{tools_backend.url}/v1/chat/completions"
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, USER_TURN],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": BUILTIN_TOOLS,
        "metadata": METADATA,
        "max_tokens": 64,
    }
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        text, calls, reason = _gather(_sse(response))
    assert reason in ("stop", "length", "tool_calls")
    assert text or calls
    if reason == "tool_calls":
        assert all(
            c["name"] in {t["function"]["name"] for t in BUILTIN_TOOLS} for c in calls.values()
        )
        assert all(isinstance(json.loads(c["arguments"]), dict) for c in calls.values())

    # The second request of a tool turn: the calls made and each tool's result.
    follow_up = {
        **body,
        "messages": [
            *body["messages"],  # type: ignore[list-item]
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_current_timestamp", "arguments": "{}"},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_0",
                "content": json.dumps({"current_timestamp": 1795650000, "current_iso": "now"}),
            },
        ],
    }
    with httpx.stream("POST", url, json=follow_up, timeout=120) as response:
        chunks = _sse(response)
    text, calls, reason = _gather(chunks)
    assert reason is not None and (text or calls)
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def _task_prompt(task: str, output: str, history: str) -> str:
    return (
        f"### Task:\n{task}\n### Guidelines:\n- Use the chat's primary language.\n"
        f"### Output:\nJSON format: {output}\n### Chat History:\n<chat_history>\n{history}\n"
        "</chat_history>"
    )


HISTORY = "USER: What time is it now?\nASSISTANT: It is midnight."
TASKS = {
    "title": (
        _task_prompt(
            "Generate a concise, 3-5 word title with an emoji summarizing the chat history.",
            '{ "title": "your concise title here" }',
            HISTORY,
        ),
        {"max_completion_tokens": 1000},
    ),
    "follow_up": (
        _task_prompt(
            "Suggest 3-5 relevant follow-up questions the user might ask next.",
            '{ "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }',
            HISTORY,
        ),
        {},
    ),
    "tags": (
        _task_prompt(
            "Generate 1-3 broad tags categorizing the main themes of the chat history.",
            '{ "tags": ["tag1", "tag2", "tag3"] }',
            HISTORY,
        ),
        {},
    ),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_task_requests_are_answered(tools_backend: BackendProcess, task: str) -> None:
    prompt, extra = TASKS[task]
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        "metadata": {**METADATA, "task": task, "task_body": {"model": "SmolLM2-135M-Instruct"}},
        **extra,
    }
    response = httpx.post(f"{tools_backend.url}/v1/chat/completions", json=body, timeout=180)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
