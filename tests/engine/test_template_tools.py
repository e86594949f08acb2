"""Tools through a model's own chat template, when the template renders tools.

A tiny random Llama with a tokenizer trained here, whose Jinja template is Hermes-like (tools
in ``<tools>``, calls in ``<tool_call>`` tags, results in ``<tool_response>``): the prompt is
the template's, with the history's calls and results in its shape, and a forced call is still
enforced by constrained decoding, so even random weights answer a valid ``tool_calls``.
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
from chatbot.config import EngineSettings, LimitSettings, ServerSettings, StoreSettings
from chatbot.engine.prompting import ChatTemplatePrompt
from chatbot.engine.transformers_engine import TransformersEngine
from tests.fixtures.engines import TRAINING_TEXT

TOOL_TEMPLATE = """
{%- if tools %}<|system|>
{% if messages[0].role == 'system' %}{{ messages[0].content }}
{% endif %}# Tools
You may call functions. Their signatures are within <tools></tools>:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>
Call each as <tool_call>{"name": ..., "arguments": ...}</tool_call>
{%- elif messages[0].role == 'system' %}<|system|>
{{ messages[0].content }}{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- elif message.role == 'tool' %}
<|user|>
<tool_response>
{{ message.content }}
</tool_response>
{%- elif message.role == 'assistant' and message.tool_calls %}
<|assistant|>
{%- for call in message.tool_calls %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}
{%- else %}
<|{{ message.role }}|>
{{ message.content }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|assistant|>
{% endif %}"""
PLAIN_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
HISTORY: list[dict[str, Any]] = [
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
    {"role": "user", "content": "And in Paris?"},
]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama with random weights; its tokenizer (trained here) carries the tool template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama-tools")
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator([*TRAINING_TEXT, TOOL_TEMPLATE, json.dumps(WEATHER)], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = TOOL_TEMPLATE
    config = LlamaConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(EngineSettings(model=str(tiny_llama_dir), batching=False))
    engine.load()
    yield engine
    engine.close()


@pytest.fixture
def client(engine: TransformersEngine, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(warmup=False),
        EngineSettings(model="tiny"),
        StoreSettings(data_dir=tmp_path / "data"),
        LimitSettings(max_tokens_cap=200),
        engine=engine,
    )
    with contextlib.ExitStack() as stack:
        yield stack.enter_context(TestClient(app, raise_server_exceptions=False))


def template_prompt(folder: Path) -> ChatTemplatePrompt:
    from transformers import AutoTokenizer

    return ChatTemplatePrompt(AutoTokenizer.from_pretrained(folder), 2048)


def test_the_template_renders_tools_calls_and_results(tiny_llama_dir: Path) -> None:
    prompt = template_prompt(tiny_llama_dir)
    assert prompt.renders_tools
    ids = prompt.encode_with_tools(HISTORY, [WEATHER])
    text = prompt._tokenizer.decode(ids)
    assert "# Tools" in text and "<tools>" in text and '"name": "get_weather"' in text
    assert "<tool_call>" in text and '"arguments": {"city": "Rome"}' in text  # a dict, not text
    assert "<tool_response>\nsunny\n</tool_response>" in text
    assert "Tool result" not in text  # nothing of the generic format


def test_a_template_without_tools_keeps_the_generic_format(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = PLAIN_TEMPLATE
    assert not ChatTemplatePrompt(tokenizer, 2048).renders_tools


def test_the_engine_takes_tools_natively(engine: TransformersEngine) -> None:
    assert engine.supports_native_tools


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_calls_parse_into_tool_calls(
    client: TestClient, tiny_llama_dir: Path, tool_choice: Any
) -> None:
    body = {"messages": HISTORY, "tools": [WEATHER], "tool_choice": tool_choice}
    response = client.post("/v1/chat/completions", json={**body, "max_tokens": 120})
    assert response.status_code == 200, response.text
    answer = response.json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"][:1]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] in ("Paris", "Rome")
    # the prompt was the template's, with the tools and the history in its shape
    expected = template_prompt(tiny_llama_dir).encode_with_tools(HISTORY, [WEATHER])
    assert answer["usage"]["prompt_tokens"] == len(expected)


def test_forced_calls_stream_as_tool_call_deltas(client: TestClient) -> None:
    body = {"messages": HISTORY, "tools": [WEATHER], "tool_choice": "required"}
    names: list[str | None] = []
    reasons: list[str | None] = []
    arguments = ""
    with client.stream(
        "POST", "/v1/chat/completions", json={**body, "max_tokens": 120, "stream": True}
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            reasons.append(choice["finish_reason"])
            for delta in choice["delta"].get("tool_calls", ()):
                if delta["index"] == 0:
                    names.append(delta.get("function", {}).get("name"))
                    arguments += delta.get("function", {}).get("arguments", "")
    assert "get_weather" in names
    assert json.loads(arguments)["city"] in ("Paris", "Rome")
    assert reasons[-1] == "tool_calls"
