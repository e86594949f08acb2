"""Tool calling and structured output on a real ``chatbot serve`` (the embedded model on the
default engine, OpenVINO), over plain HTTP: the wire shapes themselves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from jsonschema import validate

from tests.fixtures.servers import BackendProcess

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now."}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def chat(backend: BackendProcess, **body: Any) -> httpx.Response:
    body = {"messages": ASK, "temperature": 0, "max_tokens": 64, **body}
    return httpx.post(f"{backend.url}/v1/chat/completions", json=body, timeout=120)


def events(backend: BackendProcess, **body: Any) -> list[dict[str, Any]]:
    body = {"messages": ASK, "temperature": 0, "max_tokens": 64, "stream": True, **body}
    out = []
    with httpx.stream(
        "POST", f"{backend.url}/v1/chat/completions", json=body, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def test_required_tool_choice_answers_a_valid_call(tools_backend: BackendProcess) -> None:
    response = chat(tools_backend, tools=[WEATHER, TIME], tool_choice="required")
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] in ("get_weather", "get_time")
    arguments = json.loads(call["function"]["arguments"])
    if call["function"]["name"] == "get_weather":
        validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[index]
    else:
        assert arguments == {}


def test_named_tool_choice_streams_tool_call_deltas(tools_backend: BackendProcess) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    chunks = events(tools_backend, tools=[WEATHER, TIME], tool_choice=named)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function"
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(c["function"].get("arguments", "") for c in calls)
    validate(json.loads(arguments), WEATHER["function"]["parameters"])  # type: ignore[index]
    assert not any(d.get("content") for d in deltas)  # the call is not also sent as text
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_auto_and_none_answer_text_the_same_way_streamed_or_not(
    tools_backend: BackendProcess,
) -> None:
    for choice in ("auto", "none"):
        whole = chat(tools_backend, tools=[WEATHER], tool_choice=choice).json()["choices"][0]
        streamed = events(tools_backend, tools=[WEATHER], tool_choice=choice)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed)
        if whole["finish_reason"] == "tool_calls":  # the model may call on its own with auto
            assert choice == "auto" and streamed[-1]["choices"][0]["finish_reason"] == "tool_calls"
        else:
            assert text == whole["message"]["content"] and text


def test_a_conversation_with_tool_results_is_answered(tools_backend: BackendProcess) -> None:
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny and 21 degrees."},
    ]
    response = chat(tools_backend, messages=history, tools=[WEATHER], tool_choice="none")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_legacy_functions_answer_with_function_call(tools_backend: BackendProcess) -> None:
    response = chat(
        tools_backend, functions=[WEATHER["function"]], function_call={"name": "get_weather"}
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    json.loads(choice["message"]["function_call"]["arguments"])


def test_json_schema_response_format_validates(tools_backend: BackendProcess) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    ask = [{"role": "user", "content": "Give me a person named Ann, aged 30, as JSON."}]
    for stream in (False, True):
        if stream:
            chunks = events(tools_backend, messages=ask, response_format=response_format)
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        else:
            body = chat(tools_backend, messages=ask, response_format=response_format).json()
            text = body["choices"][0]["message"]["content"]
        validate(json.loads(text), PERSON)


def test_json_object_response_format_is_an_object(tools_backend: BackendProcess) -> None:
    ask = [{"role": "user", "content": 'Is the sky blue? Answer as JSON: {"answer": "yes"}'}]
    body = chat(tools_backend, messages=ask, response_format={"type": "json_object"}).json()
    choice = body["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    else:  # cut by max_tokens: still the start of an object
        assert choice["message"]["content"].lstrip().startswith("{")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, None),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "sometimes", "tools": [WEATHER]}, None),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {"type": "object", "minProperties": "a"},
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"tools": [WEATHER] * 129}, "tools"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"x": {"type": "string", "pattern": "(?=a)b"}},
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "tools",
        ),
    ],
)
def test_malformed_tools_and_formats_are_a_named_400(
    tools_backend: BackendProcess, body: dict[str, Any], param: str | None
) -> None:
    response = chat(tools_backend, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    else:
        assert error["param"] and error["param"].split("[")[0].split(".")[0] in body
