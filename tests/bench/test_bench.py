"""``chatbot bench``: numbers from a real backend, and clear refusals of bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.bench.stats import RequestRecord, percentile, summarise
from chatbot.cli import main
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
