"""The generic tool-call format and response_format checks, without a model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import validate

from chatbot.api.openai.protocol import ChatCompletionRequest, ResponseFormat
from chatbot.api.openai.response_format import json_schema_of
from chatbot.api.openai.serving import to_messages
from chatbot.api.openai.tools import ToolPlan, plan_tools, starts_like_a_call
from chatbot.domain import Role
from chatbot.errors import InvalidRequestError

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
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
HI = [{"role": "user", "content": "What is the weather in Paris?"}]


def plan(**body: Any) -> ToolPlan | None:
    request = ChatCompletionRequest.model_validate({"messages": HI, **body})
    return plan_tools(request, max_chars=10_000)


def test_auto_describes_the_tools_and_parses_a_call() -> None:
    tools = plan(tools=[WEATHER, TIME])
    assert tools is not None and not tools.forced and tools.json_schema() is None
    assert '"name": "get_weather"' in tools.instructions()
    calls = tools.parse('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("call_")
    several = tools.parse('[{"name": "get_time", "arguments": {}}, {"name": "get_time"}]')
    assert several is not None and len(several) == 2
    fenced = tools.parse('```json\n{"name": "get_time", "arguments": "{}"}\n```')
    assert fenced is not None and fenced[0].function.arguments == "{}"
    tagged = tools.parse(
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert tagged is not None and [c.function.name for c in tagged] == ["get_time", "get_weather"]


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("", True),
        ("  {", True),
        ("[", True),
        ("```", True),
        ("<tool", True),
        ("<tool_call>{", True),
    ],
)
def test_what_may_still_be_a_call_is_held(text: str, held: bool) -> None:
    assert starts_like_a_call(text) is held


@pytest.mark.parametrize("text", ["Sunny", "<b>", " The", "<toolbox"])
def test_plain_text_is_released(text: str) -> None:
    assert not starts_like_a_call(text)


@pytest.mark.parametrize(
    "text",
    [
        "Sunny.",
        '{"name": "unknown", "arguments": {}}',
        "[]",
        '{"name": "get_time", "arguments": 3}',
    ],
)
def test_text_that_is_no_call_stays_text(text: str) -> None:
    tools = plan(tools=[WEATHER, TIME])
    assert tools is not None and tools.parse(text) is None


def test_required_and_named_choices_constrain_to_valid_calls() -> None:
    required = plan(tools=[WEATHER, TIME], tool_choice="required")
    assert required is not None and required.forced
    schema = required.json_schema()
    assert schema is not None
    validate({"name": "get_weather", "arguments": {"city": "Oslo"}}, schema)
    validate({"name": "get_time", "arguments": {}}, schema)
    named = plan(
        tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}}
    )
    assert named is not None and named.named == "get_time"
    only = named.json_schema()
    assert only is not None and only["properties"]["name"] == {"const": "get_time"}
    assert "You must call the function get_time" in named.instructions()


def test_none_and_absent_tools_plan_nothing() -> None:
    assert plan(tools=[WEATHER], tool_choice="none") is None
    assert plan() is None
    assert plan(tool_choice="auto") is None


def test_parallel_calls_can_be_turned_off_and_legacy_functions_map() -> None:
    single = plan(tools=[TIME], parallel_tool_calls=False)
    assert single is not None
    calls = single.parse('[{"name": "get_time"}, {"name": "get_time"}]')
    assert calls is not None and len(calls) == 1
    legacy = plan(functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    assert legacy is not None and legacy.legacy and legacy.named == "get_weather"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "defined twice"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
            "tools[0].function.parameters",
            "not a valid JSON schema",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "tools[0].function.parameters",
            "object schema",
        ),
        ({"tool_choice": "required"}, "tool_choice", "no tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "no function named 'nope'",
        ),
        ({"tools": [WEATHER], "functions": [TIME["function"]]}, "functions", "not both"),
    ],
)
def test_bad_tools_say_what_to_fix(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        plan(**body)
    assert raised.value.param == param
    assert words in raised.value.message


def test_too_large_tools_name_the_setting() -> None:
    request = ChatCompletionRequest.model_validate({"messages": HI, "tools": [WEATHER]})
    with pytest.raises(InvalidRequestError, match="CHATBOT_MAX_MESSAGE_CHARS"):
        plan_tools(request, max_chars=20)


def test_history_with_calls_and_results_reads_in_the_generic_format() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                *HI,
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
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
            ],
            "tools": [WEATHER],
        }
    )
    messages = to_messages(request, plan_tools(request, max_chars=10_000))
    assert [m.role for m in messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    assert messages[0].content.startswith("Be brief.") and "# Tools" in messages[0].content
    assert json.loads(messages[2].content) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert messages[3].content == "Tool result (call_1):\nSunny, 21 C"


def test_response_format_schemas() -> None:
    assert json_schema_of(None) is None
    assert json_schema_of(ResponseFormat(type="text")) is None
    assert json_schema_of(ResponseFormat(type="json_object")) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    given = ResponseFormat.model_validate(
        {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    )
    assert json_schema_of(given) == schema
    with pytest.raises(InvalidRequestError, match="is required"):
        json_schema_of(ResponseFormat.model_validate({"type": "json_schema"}))
    bad = ResponseFormat.model_validate(
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    )
    with pytest.raises(InvalidRequestError, match="not a valid JSON schema"):
        json_schema_of(bad)
