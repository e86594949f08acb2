"""Every row of BENCHMARKS.md in one run: raw engines, our backend, and two llama.cpp servers.

Usage (from the repository root, after `make install-test`; the llama-server row needs
`benchmarks/build_llama_server.sh` once, ~8 minutes, and is skipped with a warning without it):

    .venv/bin/python benchmarks/run_all.py --out benchmarks/results/latest
    .venv/bin/python benchmarks/run_all.py \
        --only raw-openvino,backend-openvino,peer-llama-server,peer-llama-cpp-server

Rows (``--only`` / ``--skip`` take these labels): raw-openvino, raw-transformers-sequential,
raw-transformers-batching, raw-llamacpp (engines in process, no HTTP); backend-openvino (the
default), backend-transformers-sequential, backend-transformers-batching, backend-llamacpp
(``chatbot serve`` over HTTP); peer-llama-server (llama.cpp's C++ server, ``-t 2 -np 16``,
continuous batching) and peer-llama-cpp-server (llama-cpp-python's server). Every row streams
the same prompts (``chatbot.bench.prompts``: they ask for long replies; our API has no
``ignore_eos``, so no row gets it) and asks ``--max-tokens`` greedy tokens.

With backend-openvino it also measures: RssAnon over ``--memory-requests`` requests, cold start
(process start to ``/readyz`` 200), the process's thread count idle and under 16 streams, and a
10-turn conversation (the whole history resent each turn, as the UI does) whose TTFT per turn
is compared with llama-server's on the same user turns.

It writes one JSON per row, summary.json (with the target ratios), summary.md (the tables for
BENCHMARKS.md) and chart.png. Every command it runs is logged and kept in summary.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from httpx_sse import connect_sse

from chatbot.bench.machine import describe

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
logger = logging.getLogger("benchmarks")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_anon_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def checkpoint(out: Path, summary: dict[str, Any]) -> None:
    """summary.json as it stands, after every row: a run cut short keeps what it measured."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def read_bandwidth() -> dict[str, float]:
    """GB/s over a 512 MiB float32 array: a copy (read+write), and a sum (read only)."""
    source = np.ones(128 * 1024 * 1024, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    best_copy = best_sum = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        np.copyto(target, source)
        best_copy = min(best_copy, time.perf_counter() - began)
        began = time.perf_counter()
        source.sum()
        best_sum = min(best_sum, time.perf_counter() - began)
    size = source.nbytes
    return {
        "array_bytes": float(size),
        "copy_read_gb_s": size / best_copy / 1e9,
        "copy_read_plus_write_gb_s": 2 * size / best_copy / 1e9,
        "sum_read_gb_s": size / best_sum / 1e9,
    }


def run(command: list[str], env: dict[str, str], log: list[str]) -> None:
    log.append(_show(command, env))
    logger.info("$ %s", log[-1])
    subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=False)


def _show(command: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return (prefix + " " if prefix else "") + shlex.join(command)


@contextlib.contextmanager
def server(
    command: list[str],
    port: int,
    env: dict[str, str],
    ready_path: str,
    log: list[str],
    name: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """Start a server, time process start to ``ready_path`` 200, stop it at the end."""
    log.append(_show(command, env))
    logger.info("$ %s", log[-1])
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False) as out:
        began = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {out.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() - began > 600:
                    raise RuntimeError(f"{name} not ready in 600 s; see {out.name}")
                time.sleep(0.1)
            cold = time.monotonic() - began
            logger.info("%s ready in %.1fs", name, cold)
            yield base, process, cold
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def bench_args(args: argparse.Namespace, out: Path, label: str) -> list[str]:
    return [
        "--concurrency",
        args.levels,
        "--max-tokens",
        str(args.max_tokens),
        "--requests-per-client",
        str(args.requests_per_client),
        "--warmup",
        "1",
        "--output",
        str(out / f"{label}.json"),
        "--label",
        label,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest")
    parser.add_argument("--levels", default="1,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10, help="turns of the multi-turn run")
    parser.add_argument("--conversations", type=int, default=3, help="multi-turn repeats")
    parser.add_argument("--turn-tokens", type=int, default=64, help="tokens per reply, multi-turn")
    parser.add_argument("--only", default="", help="comma-separated row labels to run")
    parser.add_argument("--skip", default="", help="comma-separated row labels to leave out")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    chatbot = str(BIN / "chatbot")
    commands: list[str] = []
    summary: dict[str, Any] = {
        "machine": {
            **describe(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg(),
        },
        "bandwidth": read_bandwidth(),
        "cold_start_s": {},
        "rss_anon_kb": {},
        "multi_turn": {},
        "rows": [],
        "commands": commands,
    }
    logger.info("bandwidth: %s", summary["bandwidth"])
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}

    def wanted(label: str) -> bool:
        return (not only or label in only) and label not in skip

    if wanted("raw-openvino"):
        label = "raw-openvino"
        run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "bench_engine.py"),
                "--engine",
                "openvino",
                *bench_args(args, out, label),
            ],
            {"CHATBOT_MAX_BATCH_SIZE": "16"},
            commands,
        )
        summary["rows"].append(label)
        checkpoint(out, summary)

    raw = [
        ("raw-transformers-sequential", "transformers", {"CHATBOT_BATCHING": "false"}),
        (
            "raw-transformers-batching",
            "transformers",
            {"CHATBOT_BATCHING": "true", "CHATBOT_MAX_BATCH_SIZE": "16"},
        ),
        ("raw-llamacpp", "llamacpp", {"CHATBOT_MAX_BATCH_SIZE": "16"}),
    ]
    for label, engine, env in raw:
        if wanted(label):
            run(
                [chatbot, "bench", "--engine", engine, *bench_args(args, out, label)], env, commands
            )
            summary["rows"].append(label)
            checkpoint(out, summary)

    backends = [
        ("backend-openvino", {}),  # the default engine for the embedded model
        (
            "backend-transformers-sequential",
            {"CHATBOT_ENGINE": "transformers", "CHATBOT_BATCHING": "false"},
        ),
        (
            "backend-transformers-batching",
            {"CHATBOT_ENGINE": "transformers", "CHATBOT_BATCHING": "true"},
        ),
        ("backend-llamacpp", {"CHATBOT_ENGINE": "llamacpp"}),
    ]
    for label, env in backends:
        if not wanted(label):
            continue
        port = free_port()
        data = tempfile.mkdtemp(prefix="bench-data-")
        full_env = {
            **env,
            "CHATBOT_MAX_BATCH_SIZE": "16",
            "CHATBOT_MAX_CONCURRENT_REQUESTS": "16",
            "CHATBOT_MAX_QUEUED_REQUESTS": "64",
            "CHATBOT_DATA_DIR": data,
            "CHATBOT_LOG_LEVEL": "WARNING",
        }
        command = [chatbot, "serve", "--host", "127.0.0.1", "--port", str(port)]
        with server(command, port, full_env, "/readyz", commands, label) as (base, process, cold):
            summary["cold_start_s"][label] = cold
            summary["rss_anon_kb"][f"{label}:ready"] = rss_anon_kb(process.pid)
            run([chatbot, "bench", "--url", base, *bench_args(args, out, label)], {}, commands)
            summary["rss_anon_kb"][f"{label}:after-bench"] = rss_anon_kb(process.pid)
            summary["rows"].append(label)
            checkpoint(out, summary)
            if label == "backend-openvino":
                summary["threads"] = threads_run(chatbot, base, process.pid, args, out, commands)
                summary["multi_turn"][label] = multi_turn(base, args)
                checkpoint(out, summary)
                if args.memory_requests:
                    summary["memory"] = memory_run(chatbot, base, process.pid, args, out, commands)
                    checkpoint(out, summary)

    if wanted("peer-llama-server"):
        peer_llama_server(args, out, summary, commands)

    if wanted("peer-llama-cpp-server"):
        from chatbot.engine.model_source import embedded_gguf_path

        port = free_port()
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(embedded_gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(os.cpu_count() or 1),
            "--n_threads_batch",
            str(os.cpu_count() or 1),
            # By default a new request interrupts the running one; queue them instead.
            "--interrupt_requests",
            "False",
        ]
        label = "peer-llama-cpp-server"
        with server(command, port, {}, "/v1/models", commands, label) as (base, process, cold):
            summary["cold_start_s"][label] = cold
            summary["rss_anon_kb"][f"{label}:ready"] = rss_anon_kb(process.pid)
            run([chatbot, "bench", "--url", base, *bench_args(args, out, label)], {}, commands)
            summary["rows"].append(label)
            checkpoint(out, summary)

    summary["machine"]["loadavg_at_end"] = os.getloadavg()
    summary["targets"] = targets(out, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(out, summary)
    return 0


LLAMA_SERVER = Path.home() / ".cache" / "chatbot" / "llama-server" / "llama-server"
LLAMA_SERVER_SLOTS = 16
LLAMA_SERVER_SLOT_CONTEXT = 2048  # prompt + 128 tokens fits; so does the 10-turn conversation


def peer_llama_server(
    args: argparse.Namespace, out: Path, summary: dict[str, Any], commands: list[str]
) -> None:
    """llama.cpp's own C++ server: 2 threads, 16 slots, continuous batching (its default)."""
    from chatbot.engine.model_source import embedded_gguf_path

    label = "peer-llama-server"
    if not LLAMA_SERVER.is_file():
        logger.warning("%s: no %s; run benchmarks/build_llama_server.sh", label, LLAMA_SERVER)
        return
    port = free_port()
    threads = str(os.cpu_count() or 1)
    command = [
        str(LLAMA_SERVER),
        "--model",
        str(embedded_gguf_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        threads,
        "--threads-batch",
        threads,
        "--parallel",
        str(LLAMA_SERVER_SLOTS),
        "--cont-batching",
        # one cache for all slots: 16 x 2048 tokens, so each slot holds prompt + reply (and a
        # 10-turn conversation) whether or not this version splits the cache per slot
        "--ctx-size",
        str(LLAMA_SERVER_SLOTS * LLAMA_SERVER_SLOT_CONTEXT),
        "--log-disable",
    ]
    flags = LLAMA_SERVER.with_name(LLAMA_SERVER.name + ".flags")
    summary["llama_server_build_flags"] = (
        flags.read_text().strip() if flags.is_file() else "unknown (built before the flags file)"
    )
    with server(command, port, {}, "/health", commands, label) as (base, process, cold):
        summary["cold_start_s"][label] = cold
        summary["rss_anon_kb"][f"{label}:ready"] = rss_anon_kb(process.pid)
        run(
            [str(BIN / "chatbot"), "bench", "--url", base, *bench_args(args, out, label)],
            {},
            commands,
        )
        summary["rows"].append(label)
        summary["multi_turn"][label] = multi_turn(base, args)
        checkpoint(out, summary)


USER_TURNS = (
    "Hi! I am planning a small vegetable garden. Where should I start?",
    "Which vegetables are easiest for a beginner?",
    "How often should I water tomatoes?",
    "What about the soil, do I need to buy special soil?",
    "How do I keep snails away from the lettuce?",
    "Can I grow herbs in the same bed?",
    "When is the best time to plant carrots?",
    "How much sun do peppers need?",
    "Should I use compost, and how do I make it?",
    "Thanks! Can you summarise the plan in a few points?",
)


def multi_turn(base: str, args: argparse.Namespace) -> dict[str, Any]:
    """TTFT of each turn of ``--conversations`` conversations of ``--turns`` turns.

    Each turn sends the whole history (the user turns and the server's own replies) to
    ``/v1/chat/completions``, as the UI does; greedy, ``--turn-tokens`` tokens per reply. The
    conversations differ from their first message on, so none is served from another's cache.
    """
    url = f"{base}/v1/chat/completions"
    with httpx.Client(timeout=300) as client:
        model = client.get(f"{base}/v1/models").json()["data"][0]["id"]
        conversations = []
        for number in range(args.conversations):
            messages: list[dict[str, str]] = []
            turns = []
            for index in range(args.turns):
                text = USER_TURNS[index % len(USER_TURNS)]
                if index == 0:
                    text = f"(Garden number {number + 1}.) {text}"
                messages.append({"role": "user", "content": text})
                turn = _turn(client, url, model, messages, args.turn_tokens)
                messages.append({"role": "assistant", "content": turn.pop("text")})
                turns.append({"turn": index + 1, **turn})
            conversations.append(turns)
    first = [c[0]["ttft_s"] for c in conversations]
    last = [c[-1]["ttft_s"] for c in conversations]
    ratios = [b / a for a, b in zip(first, last, strict=True)]
    return {
        "turns": args.turns,
        "turn_tokens": args.turn_tokens,
        "conversations": conversations,
        "ttft_first_median_s": float(np.median(first)),
        "ttft_last_median_s": float(np.median(last)),
        "ratio_last_to_first": ratios,
        "ratio_last_to_first_median": float(np.median(ratios)),
    }


def _turn(
    client: httpx.Client, url: str, model: str, messages: list[dict[str, str]], tokens: int
) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    usage: dict[str, Any] = {}
    with connect_sse(client, "POST", url, json=body) as source:
        source.response.raise_for_status()
        for sse in source.iter_sse():
            if sse.data == "[DONE]":
                break
            if not sse.data:
                continue
            event = json.loads(sse.data)
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    ttft = ttft if ttft is not None else time.perf_counter() - began
                    parts.append(content)
            usage = event.get("usage") or usage
    return {
        "ttft_s": ttft,
        "seconds": time.perf_counter() - began,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "text": "".join(parts),
    }


def threads_run(
    chatbot: str, base: str, pid: int, args: argparse.Namespace, out: Path, commands: list[str]
) -> dict[str, Any]:
    """The process's thread count idle (after the bench warmed it) and under 16 streams."""
    time.sleep(2)
    idle_before = thread_count(pid)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(thread_count(pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run(
        [
            chatbot,
            "bench",
            "--url",
            base,
            "--concurrency",
            "16",
            "--max-tokens",
            str(args.max_tokens),
            "--requests-per-client",
            "1",
            "--warmup",
            "0",
            "--output",
            str(out / "threads-run.json"),
            "--label",
            "threads",
        ],
        {},
        commands,
    )
    stop.set()
    sampler.join()
    time.sleep(2)
    return {
        "idle_before": idle_before,
        "during_16_streams_min": min(samples),
        "during_16_streams_max": max(samples),
        "idle_after": thread_count(pid),
        "samples": len(samples),
    }


def targets(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's ratios, from this run's rows (absent rows give no ratio)."""

    def level(label: str, concurrency: int) -> dict[str, Any] | None:
        path = out / f"{label}.json"
        if label not in summary["rows"] or not path.exists():
            return None
        for lv in json.loads(path.read_text())["levels"]:
            if lv["concurrency"] == concurrency:
                return dict(lv)
        return None

    def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
        if a is None or b is None or not b.get(key):
            return None
        return float(a[key]) / float(b[key])

    ours = {c: level("backend-openvino", c) for c in (1, 8, 16)}
    raw = level("raw-openvino", 1)
    peer = {c: level("peer-llama-server", c) for c in (1, 8, 16)}
    result: dict[str, Any] = {
        "backend_c1_over_raw_c1": ratio(ours[1], raw, "aggregate_tokens_per_s"),
        "backend_c1_over_llama_server_c1": ratio(ours[1], peer[1], "aggregate_tokens_per_s"),
        "backend_c8_over_llama_server_c8": ratio(ours[8], peer[8], "aggregate_tokens_per_s"),
        "backend_c16_over_llama_server_c16": ratio(ours[16], peer[16], "aggregate_tokens_per_s"),
        "backend_ttft_p95_c8_over_c1": ratio(ours[8], ours[1], "ttft_p95_s"),
    }
    if ours[1] and raw and ours[1]["itl_p50_s"] and raw["itl_p50_s"]:
        # decode speed alone (TTFT left out): 1 / inter-token latency
        result["backend_c1_decode_over_raw_c1"] = raw["itl_p50_s"] / ours[1]["itl_p50_s"]
    for label, turns in summary["multi_turn"].items():
        result[f"multi_turn_ttft_last_over_first:{label}"] = turns["ratio_last_to_first_median"]
    return result


def memory_run(
    chatbot: str, base: str, pid: int, args: argparse.Namespace, out: Path, commands: list[str]
) -> dict[str, Any]:
    """RssAnon sampled every second while ``--memory-requests`` short requests run."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - began, rss_anon_kb(pid)))
            stop.wait(1.0)

    clients = 4
    before = rss_anon_kb(pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    run(
        [
            chatbot,
            "bench",
            "--url",
            base,
            "--concurrency",
            str(clients),
            "--max-tokens",
            "16",
            "--requests-per-client",
            str(args.memory_requests // clients),
            "--warmup",
            "0",
            "--output",
            str(out / "memory-run.json"),
            "--label",
            "memory",
        ],
        {},
        commands,
    )
    stop.set()
    sampler.join()
    after = rss_anon_kb(pid)
    tenth = max(1, len(samples) // 10)
    early = max(kb for _, kb in samples[:tenth])
    late = max(kb for _, kb in samples[-tenth:])
    return {
        "requests": args.memory_requests,
        "rss_anon_kb_before": before,
        "rss_anon_kb_after": after,
        "rss_anon_kb_peak_first_tenth": early,
        "rss_anon_kb_peak_last_tenth": late,
        "samples": samples,
    }


def write_report(out: Path, summary: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from chatbot.bench.report import plot, table

    results = [
        json.loads((out / f"{label}.json").read_text())
        for label in summary["rows"]
        if (out / f"{label}.json").exists()
    ]
    if results:
        plot(
            results,
            out / "chart.png",
            title="SmolLM2-135M Q4_1 GGUF, 2 shared cores, 128 greedy tokens/reply",
        )
    lines: list[str] = []
    if results:
        heads = [f"c={lv['concurrency']} agg tok/s, TTFT p95" for lv in results[0]["levels"]]
        lines.append("| row | " + " | ".join(heads) + " |")
        lines.append("|---|" + "---:|" * len(results[0]["levels"]))
        for result in results:
            cells = [
                f"{lv['aggregate_tokens_per_s']:.0f}, {lv['ttft_p95_s'] or 0:.2f} s"
                for lv in result["levels"]
            ]
            lines.append(f"| {result['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    for result in results:
        lines += [f"### {result['label']}", "", table(result), ""]
    if "llama_server_build_flags" in summary:
        lines += [f"llama-server built with: `{summary['llama_server_build_flags']}`", ""]
    lines += ["### targets", ""]
    lines += [
        f"- {name}: {value:.2f}" if isinstance(value, float) else f"- {name}: {value}"
        for name, value in summary.get("targets", {}).items()
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
