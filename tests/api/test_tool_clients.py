"""Real clients against a real ``chatbot serve``: the official ``openai`` client and
langchain-openai, with tools and structured output, as their users write them."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, Field

from tests.fixtures.engines import run_async
from tests.fixtures.servers import BackendProcess

pytestmark = pytest.mark.slow

MODEL = "SmolLM2-135M-Instruct"  # the served model's id: another name is a 404

WEATHER: ChatCompletionToolParam = {
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
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}
]


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=20)
    age: int


class Verdict(BaseModel):
    """Whether a statement is true."""

    answer: Literal["yes", "no"]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def client_of(backend: BackendProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{backend.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_tools_sync_and_streamed(tools_backend: BackendProcess) -> None:
    client = client_of(tools_backend)
    completion = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        stream=True,
    )
    names, arguments, reasons = [], "", []
    for chunk in stream:
        for streamed in chunk.choices:
            reasons.append(streamed.finish_reason)
            for delta in streamed.delta.tool_calls or ():
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
                arguments += (delta.function.arguments or "") if delta.function else ""
    assert names == ["get_weather"] and reasons[-1] == "tool_calls"
    assert arguments == call.function.arguments  # greedy: the same call either way

    # The tool's answer goes back as a tool message; the model answers in text.
    follow_up: list[ChatCompletionMessageParam] = [
        *ASK,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees."},
    ]
    answer = client.chat.completions.create(
        model=MODEL, messages=follow_up, tools=[WEATHER], tool_choice="none", temperature=0
    )
    assert answer.choices[0].message.content


def test_openai_client_async_tools_and_parse(tools_backend: BackendProcess) -> None:
    async def run() -> tuple[Any, Any]:
        async with openai.AsyncOpenAI(
            base_url=f"{tools_backend.url}/v1", api_key="unused", max_retries=0
        ) as client:
            called = await client.chat.completions.create(
                model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0
            )
            parsed = await client.chat.completions.parse(
                model=MODEL,
                messages=[{"role": "user", "content": "Ann is 30. Give her as JSON."}],
                response_format=Person,
                temperature=0,
            )
            return called, parsed

    called, parsed = run_async(run())
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.age, int)


def test_openai_client_response_format(tools_backend: BackendProcess) -> None:
    client = client_of(tools_backend)
    schema = Verdict.model_json_schema()
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": schema, "strict": True},
        },
        temperature=0,
    )
    Verdict.model_validate_json(completion.choices[0].message.content or "")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}},
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert Verdict.model_validate_json(text) == Verdict.model_validate_json(
        completion.choices[0].message.content or ""
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert refused.value.body["param"] == "tool_choice"  # type: ignore[index]


def langchain_model(backend: BackendProcess) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{backend.url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        model="SmolLM2-135M-Instruct",
        temperature=0,
        max_tokens=64,  # type: ignore[call-arg]
        max_retries=0,
    )


def test_langchain_bind_tools(tools_backend: BackendProcess) -> None:
    model = langchain_model(tools_backend)
    message = model.bind_tools([get_weather], tool_choice="get_weather").invoke(
        "What is the weather in Paris?"
    )
    assert isinstance(message, AIMessage)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    pieces = list(
        model.bind_tools([get_weather], tool_choice="any").stream("What is the weather in Paris?")
    )
    merged = pieces[0]
    for piece in pieces[1:]:
        merged = merged + piece
    assert [c["name"] for c in merged.tool_calls] == ["get_weather"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(
    tools_backend: BackendProcess, method: Literal["json_schema", "function_calling"]
) -> None:
    model = langchain_model(tools_backend).with_structured_output(Person, method=method)
    person = model.invoke("Ann is 30 years old. Describe her.")
    assert isinstance(person, Person) and isinstance(person.age, int)
    plain = langchain_model(tools_backend).invoke("Say hi.")
    assert isinstance(plain.content, str) and plain.content
