"""Real OpenAI-compatible clients against a real ``chatbot serve``, as their users run them.

The official ``openai`` client (sync and async, streaming and not), LangChain's
``ChatOpenAI`` (``invoke``, ``stream``) and simonw's ``llm`` CLI. Greedy decoding makes
every client's reply the same text, so each is checked against the others, not just for
being non-empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from langchain_openai import ChatOpenAI

from tests.fixtures.engines import run_async
from tests.fixtures.servers import BackendProcess

pytestmark = pytest.mark.slow

MODEL = "SmolLM2-135M-Instruct"
PROMPT = "Say hi"
TOKENS = 4
LLM = Path(sys.executable).parent / "llm"


def _greedy_reply(backend: BackendProcess) -> str:
    client = openai.OpenAI(base_url=f"{backend.url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=TOKENS,
        temperature=0,
    )
    text = completion.choices[0].message.content
    assert text
    return text


def test_async_openai_client_streams_and_answers(backend_server: BackendProcess) -> None:
    expected = _greedy_reply(backend_server)

    async def talk() -> tuple[str, str, int]:
        async with openai.AsyncOpenAI(
            base_url=f"{backend_server.url}/v1", api_key="unused", max_retries=0
        ) as client:
            messages: list[openai.types.chat.ChatCompletionMessageParam] = [
                {"role": "user", "content": PROMPT}
            ]
            whole = await client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=TOKENS, temperature=0
            )
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                max_tokens=TOKENS,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            pieces: list[str] = []
            completion_tokens = 0
            async for chunk in stream:
                pieces += [c.delta.content or "" for c in chunk.choices]
                if chunk.usage is not None:
                    completion_tokens = chunk.usage.completion_tokens
            return whole.choices[0].message.content or "", "".join(pieces), completion_tokens

    whole, streamed, completion_tokens = run_async(talk())
    assert whole == streamed == expected
    assert completion_tokens == TOKENS


def test_openai_client_sees_openais_errors(backend_server: BackendProcess) -> None:
    client = openai.OpenAI(base_url=f"{backend_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], max_tokens=1
        )
    assert unknown.value.code == "model_not_found"
    long = "word " * 19_000  # past SmolLM2's 8192-token window, within the message limit
    with pytest.raises(openai.BadRequestError) as overflow:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long}], max_tokens=8
        )
    assert overflow.value.code == "context_length_exceeded"
    assert "This model's maximum context length is 8192 tokens" in overflow.value.message


def test_langchain_chat_openai_invokes_and_streams(backend_server: BackendProcess) -> None:
    expected = _greedy_reply(backend_server)
    chat = ChatOpenAI(
        base_url=f"{backend_server.url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        model=MODEL,
        max_tokens=TOKENS,  # type: ignore[call-arg]
        temperature=0,
        max_retries=0,
    )
    answer = chat.invoke(PROMPT)
    assert answer.content == expected
    assert answer.response_metadata["finish_reason"] in ("length", "stop")
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] <= TOKENS
    streamed = "".join(str(chunk.content) for chunk in chat.stream(PROMPT))
    assert streamed == expected


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "no-stream"])
def test_llm_cli_talks_to_the_server(
    backend_server: BackendProcess, tmp_path: Path, streaming: bool
) -> None:
    expected = _greedy_reply(backend_server)
    # llm's documented way to add an OpenAI-compatible model: extra-openai-models.yaml.
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: chatbot\n  model_name: {MODEL}\n  api_base: {backend_server.url}/v1\n"
    )
    # No plugins: the embedded model's carrier package is an llm plugin, not needed here.
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "LLM_LOAD_PLUGINS": ""}
    command = [str(LLM), "-m", "chatbot", "-o", "max_tokens", str(TOKENS)]
    command += ["-o", "temperature", "0", "--no-log", PROMPT]
    if not streaming:
        command.insert(1, "--no-stream")
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.strip()
