"""Bench results as JSON, and charts of one run or several side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def plot(results: Sequence[dict[str, Any]], path: Path, title: str = "chatbot bench") -> None:
    """Aggregate tokens/s and TTFT p95 against concurrency, one line per labelled run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for result in results:
        levels = result["levels"]
        x = [level["concurrency"] for level in levels]
        label = result.get("label") or result.get("target", "")
        throughput.plot(x, [lv["aggregate_tokens_per_s"] for lv in levels], marker="o", label=label)
        latency.plot(x, [lv["ttft_p95_s"] or 0.0 for lv in levels], marker="o", label=label)
    throughput.set(
        xlabel="concurrent clients",
        ylabel="aggregate tokens/s",
        title="Throughput (higher is better)",
        xscale="log",
    )
    latency.set(
        xlabel="concurrent clients",
        ylabel="seconds",
        title="Time to first token, p95 (lower is better)",
        xscale="log",
        yscale="log",
    )
    for axes in (throughput, latency):
        ticks = sorted({lv["concurrency"] for r in results for lv in r["levels"]})
        axes.set_xticks(ticks, [str(t) for t in ticks])
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(result: dict[str, Any]) -> str:
    """A plain-text table of one run, for the terminal and for BENCHMARKS.md."""
    lines = [
        "| concurrency | agg tok/s | per-client tok/s (mean) | TTFT p50 / p95 (s) "
        "| ITL p50 / p95 (ms) | req/s | tokens/req | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in result["levels"]:
        clients = lv["per_client_tokens_per_s"]
        mean_client = sum(clients) / len(clients) if clients else 0.0
        lines.append(
            f"| {lv['concurrency']} | {lv['aggregate_tokens_per_s']:.1f} | {mean_client:.1f} "
            f"| {_s(lv['ttft_p50_s'])} / {_s(lv['ttft_p95_s'])} "
            f"| {_ms(lv['itl_p50_s'])} / {_ms(lv['itl_p95_s'])} "
            f"| {lv['requests_per_s']:.2f} | {lv['mean_tokens_per_request']:.0f} | {lv['errors']} |"
        )
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"
