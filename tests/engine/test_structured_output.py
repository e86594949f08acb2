"""Every local engine honours a JSON schema (constrained decoding): the reply parses and
validates, and a schema that cannot be enforced is refused before the first chunk."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jsonschema import validate

from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Engine, collect
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.errors import InvalidRequestError
from tests.fixtures.engines import run_async

pytestmark = pytest.mark.slow

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}
ASK = [Message.user("Describe Ann, 30, who has a cat, as JSON.")]
GREEDY = GenerationParams(max_new_tokens=60)
# A pattern llguidance cannot compile (a look-ahead): no engine can promise it.
UNENFORCEABLE: dict[str, Any] = {"type": "string", "pattern": "(?=a)b"}


def constrained(engine: Engine, schema: dict[str, Any], params: GenerationParams = GREEDY) -> str:
    text, last = run_async(collect(engine.generate(ASK, params, json_schema=schema)))
    assert last.finish_reason is not None
    return text


def check_engine(engine: Engine) -> None:
    validate(json.loads(constrained(engine, PERSON)), PERSON)
    sampled = GenerationParams(max_new_tokens=60, temperature=1.0, seed=7)
    validate(json.loads(constrained(engine, PERSON, sampled)), PERSON)
    with pytest.raises(InvalidRequestError, match="cannot be enforced"):
        constrained(engine, UNENFORCEABLE)
    plain, _ = run_async(collect(engine.generate(ASK, GenerationParams(max_new_tokens=8))))
    assert plain  # the same engine still answers unconstrained afterwards


def test_transformers_follows_the_schema(embedded_engine: TransformersEngine) -> None:
    check_engine(embedded_engine)


def test_batched_rows_keep_their_own_grammar(embedded_engine: TransformersEngine) -> None:
    """Two constrained replies and a free one decode in one batch; each keeps its own mask."""
    from chatbot.config import EngineSettings

    engine = TransformersEngine(EngineSettings(model="embedded", max_batch_size=4))
    flag = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    async def run() -> list[str]:
        streams = [
            engine.generate(ASK, GREEDY, json_schema=PERSON),
            engine.generate(ASK, GenerationParams(max_new_tokens=12)),
            engine.generate(ASK, GREEDY, json_schema={**flag, "additionalProperties": False}),
        ]
        return [text for text, _ in await asyncio.gather(*(collect(s) for s in streams))]

    try:
        person, free, ok = run_async(run())
    finally:
        engine.close()
    validate(json.loads(person), PERSON)
    assert json.loads(ok) in ({"ok": True}, {"ok": False})
    alone, _ = run_async(
        collect(embedded_engine.generate(ASK, GenerationParams(max_new_tokens=12)))
    )
    assert free == alone  # the free row is untouched by its neighbours' grammars


def test_seq2seq_follows_the_schema(blenderbot_engine: TransformersEngine) -> None:
    """Random weights would say anything: only the grammar makes this JSON."""
    tiny = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    tiny["additionalProperties"] = False
    validate(json.loads(constrained(blenderbot_engine, tiny)), tiny)


def test_openvino_follows_the_schema_and_refuses_what_it_cannot() -> None:
    pytest.importorskip("openvino_genai")
    from chatbot.config import EngineSettings
    from chatbot.engine.openvino_engine import OpenVINOEngine

    engine = OpenVINOEngine(EngineSettings(model="embedded", max_batch_size=2))
    try:
        check_engine(engine)
    finally:
        engine.close()


def test_llamacpp_follows_the_schema() -> None:
    pytest.importorskip("llama_cpp")
    from chatbot.config import EngineSettings
    from chatbot.engine.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(EngineSettings(engine="llamacpp", max_batch_size=2))
    try:
        check_engine(engine)
    finally:
        engine.close()
