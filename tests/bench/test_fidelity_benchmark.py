"""``benchmarks/fidelity.py`` runs end to end on a few tokens (its figures: BENCHMARKS.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fidelity.py"


def test_the_fidelity_benchmark_runs_on_a_few_tokens(tmp_path: Path) -> None:
    output = tmp_path / "fidelity.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--min-tokens",
            "40",
            "--prompts",
            "2",
            "--tokens",
            "3",
            "--output",
            str(output),
            "--scratch",
            str(tmp_path / "reader"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(output.read_text())
    assert payload["transcript_tokens"] >= 40 and payload["machine"]["cpu"]
    assert "FP32" in payload["machine"]["openvino_capabilities"]
    names = [row["engine"] for row in payload["rows"]]
    assert "openvino, exact IR copy, f32 (engine default)" in names
    assert any("GGUF reader" in name for name in names)
    for row in payload["rows"]:
        assert 0.0 <= row["identical"] <= 1.0
        if "mean_kl" in row:
            assert math.isfinite(row["mean_kl"]) and row["mean_kl"] >= -1e-6
            assert 0.0 <= row["top1"] <= 1.0 and row["perplexity"] > 1.0
    assert "mean KL" in result.stderr  # the table a reader of the run sees
