"""Every row of BENCHMARKS.md in one run: raw engines, our backend, and llama-cpp-python's server.

Usage (from the repository root, after `make install-test`):

    .venv/bin/python benchmarks/run_all.py --out benchmarks/results/latest

It writes one JSON per row, summary.json, summary.md (the tables for BENCHMARKS.md) and
chart.png. Every command it runs is logged and kept in summary.json.
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
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated row labels to run")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    chatbot = str(BIN / "chatbot")
    commands: list[str] = []
    summary: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg(),
        },
        "bandwidth": read_bandwidth(),
        "cold_start_s": {},
        "rss_anon_kb": {},
        "rows": [],
        "commands": commands,
    }
    logger.info("bandwidth: %s", summary["bandwidth"])
    only = {s for s in args.only.split(",") if s}

    def wanted(label: str) -> bool:
        return not only or label in only

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

    backends = [
        ("backend-transformers-sequential", {"CHATBOT_BATCHING": "false"}),
        ("backend-transformers-batching", {"CHATBOT_BATCHING": "true"}),
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
            if label == "backend-transformers-batching" and args.memory_requests:
                summary["memory"] = memory_run(chatbot, base, process.pid, args, out, commands)

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

    summary["machine"]["loadavg_at_end"] = os.getloadavg()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(out, summary)
    return 0


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
        plot(results, out / "chart.png", title="SmolLM2-135M on this machine, 128 tokens/reply")
    lines = []
    for result in results:
        lines += [f"### {result['label']}", "", table(result), ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
