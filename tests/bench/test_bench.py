"""``chatbot bench``: numbers from a real backend, and clear refusals of bad flags."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from chatbot import errors
from chatbot.bench import engine_load, http_load
from chatbot.bench.stats import LevelResult, RequestRecord, percentile, summarise
from chatbot.cli import main
from chatbot.domain import FinishReason, GenerationParams, Message, Usage
from chatbot.engine import Chunk
from tests.fixtures.engines import run_async
from tests.fixtures.servers import BackendProcess, free_port


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([], 50) is None


def test_summary_counts_tokens_errors_and_gaps() -> None:
    ok = RequestRecord(client=0, started=0.0, chunk_times=[0.5, 0.6, 0.8], duration=1.0)
    failed = RequestRecord(client=1, started=0.0, error="HTTP 429: busy", duration=0.1)
    level = summarise(2, [ok, failed], wall_s=2.0)
    assert level.requests == 2 and level.errors == 1
    assert level.total_tokens == 3
    assert level.aggregate_tokens_per_s == pytest.approx(1.5)
    assert level.ttft_p50_s == pytest.approx(0.5)
    assert level.itl_p95_s == pytest.approx(0.2)
    assert level.per_client_tokens_per_s == [pytest.approx(3.0), 0.0]
    assert level.error_samples == ["HTTP 429: busy"]


def test_bad_flags_are_refused_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--url", "http://127.0.0.1:1", "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err
    assert main(["bench", "--url", "ftp://example", "--concurrency", "1"]) == 2
    assert "--url" in capsys.readouterr().err


def test_an_unreachable_server_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["bench", "--url", url, "--concurrency", "1", "--warmup", "0"]) == 2
    assert url in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_run_against_the_real_backend(
    backend_server: BackendProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(
        [
            "bench",
            "--url",
            backend_server.url,
            "--concurrency",
            "1,2",
            "--max-tokens",
            "4",
            "--requests-per-client",
            "1",
            "--warmup",
            "1",
            "--output",
            str(output),
            "--chart",
            str(chart),
            "--label",
            "smoke",
        ]
    )
    assert code == 0
    report = json.loads(output.read_text())
    assert report["label"] == "smoke"
    assert report["target"] == f"{backend_server.url}/v1"
    assert [level["concurrency"] for level in report["levels"]] == [1, 2]
    for level in report["levels"]:
        assert level["errors"] == 0
        assert level["requests"] == level["concurrency"]
        assert 1 <= level["mean_tokens_per_request"] <= 4
        assert level["aggregate_tokens_per_s"] > 0
        assert level["ttft_p50_s"] is not None and level["ttft_p50_s"] > 0
        assert len(level["per_client_tokens_per_s"]) == level["concurrency"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 2 |" in capsys.readouterr().out


# -- the load generators, without a model or a server ---------------------------------------


class _Body(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


def _data(payload: object) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _delta(text: str) -> bytes:
    return _data({"choices": [{"index": 0, "delta": {"content": text}}]})


async def _stream_one(parts: list[bytes], status: int = 200) -> RequestRecord:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(status, headers=headers, stream=_Body(parts))

    target = http_load.HttpTarget("http://server/v1", "m")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await http_load.stream_one(client, target, "hi", 4, 0)


def test_http_stream_counts_chunks_and_the_servers_usage() -> None:
    usage = _data({"choices": [], "usage": {"completion_tokens": 3}})
    parts = [b": ping\n\n", _delta("a"), _delta("b"), usage, b"data: [DONE]\n\n"]
    record = run_async(_stream_one(parts))
    assert record.error is None
    assert len(record.chunk_times) == 2 and record.tokens == 3


def test_http_stream_names_an_error_event_by_its_class() -> None:
    body = errors.to_http(errors.UpstreamTimeoutError("the upstream timed out"))[1]
    record = run_async(_stream_one([_delta("a"), _data(body)]))
    assert record.error == "UpstreamTimeoutError: the upstream timed out"


def test_http_stream_cut_before_done_is_an_error() -> None:
    record = run_async(_stream_one([_delta("a")]))
    assert record.error == "the stream ended before [DONE]"


def test_http_refusal_is_recorded_with_its_status() -> None:
    record = run_async(_stream_one([b'{"error": {"message": "busy"}}'], status=429))
    assert record.error is not None and record.error.startswith("HTTP 429: ")


class _CountingEngine:
    """Streams ``n`` tokens a little apart, as an engine's loop would."""

    model_id = "counting"
    context_window = 1000

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]:
        yield Chunk("", Usage(prompt_tokens=1))
        for count in range(1, params.max_new_tokens + 1):
            await asyncio.sleep(0.001)
            yield Chunk("t", Usage(prompt_tokens=1, completion_tokens=count))
        usage = Usage(prompt_tokens=1, completion_tokens=params.max_new_tokens)
        yield Chunk("", usage, FinishReason.LENGTH)


def test_engine_load_runs_clients_as_tasks_not_threads() -> None:
    seen: list[int] = []
    before: list[int] = []

    async def level() -> LevelResult:
        before.append(threading.active_count())  # the loop's own thread counted
        task = asyncio.ensure_future(engine_load.run_level(_CountingEngine(), 8, 2, 5))
        while not task.done():
            seen.append(threading.active_count())
            await asyncio.sleep(0.001)
        return await task

    result = run_async(level())
    assert result.requests == 16 and result.errors == 0
    assert result.total_tokens == 16 * 5
    assert max(seen) == before[0]
