"""How fast the server answers small requests while the OpenVINO engine streams eight replies.

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/loop_share.py --rounds 3 --interval 0.02

OpenVINO GenAI's Python binding of ``step()`` holds the GIL for the whole step (40-60 ms at
eight streams here, up to a second for a long prefill), so the server's event loop runs between
steps only. This measures what that costs a client and whether a longer GIL switch interval
(``sys.setswitchinterval``; Python's default is 5 ms) buys the loop a better share. Each round
starts ``chatbot serve`` twice, as shipped and with ``--interval`` set in a launcher,
alternating so both see the same minutes of a shared machine. In each, eight clients stream long
greedy replies; meanwhile one client times ``GET /healthz`` and a request refused with 422,
one after the other, then a ninth stream's time to its first token, and bursts of seven large
requests refused after validation (the slowest answer). Prints medians per kind and their
ratios; ``--output`` keeps the raw figures. Results: BENCHMARKS.md, "The event loop beside
OpenVINO's steps".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks")
STREAMS = 8
BURST = 7
PROMPT = [{"role": "user", "content": "Count from 1 to 300, one number per line."}]
LAUNCH = (
    "import sys\n"
    "sys.setswitchinterval({interval})\n"
    "from chatbot.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(interval: float | None, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "CHATBOT_DATA_DIR": str(data_dir),
        "CHATBOT_MAX_TOKENS_CAP": "4000",
        "CHATBOT_MAX_CONCURRENT_REQUESTS": str(STREAMS + 1),  # the ninth joins the batch
    }
    if interval is None:  # as shipped: Python's default interval
        command = [str(ROOT / ".venv/bin/chatbot")]
    else:
        command = [sys.executable, "-c", LAUNCH.format(interval=interval)]
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not become ready")


def _stream(url: str, max_tokens: int, stop: threading.Event, out: dict[str, Any]) -> None:
    body = {"messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    pieces = 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(f"the stream failed: {chunk['error']}")
                if any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                    pieces += 1
                    out.setdefault("first_token_s", time.perf_counter() - started)
            if stop.is_set():
                break
    out["pieces"] = pieces
    out["seconds"] = time.perf_counter() - started


def _burst(url: str) -> float:
    """Seven requests at once, each a 100-message body refused after it is read and validated
    (``max_tokens`` over the cap): event-loop work only. Seconds until the slowest is answered."""
    history = [{"role": "user", "content": "word " * 200} for _ in range(100)]
    body = {"messages": history, "max_tokens": 1_000_000}
    barrier = threading.Barrier(BURST)
    took: list[float] = []

    def one() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.get("/healthz")
            barrier.wait(30)
            start = time.perf_counter()
            refused = client.post("/v1/chat/completions", json=body)
            took.append(time.perf_counter() - start)
            assert refused.status_code == 400, refused.status_code

    threads = [threading.Thread(target=one) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return max(took)


def _measure(url: str, seconds: float) -> dict[str, Any]:
    stop = threading.Event()
    streams = [{} for _ in range(STREAMS)]
    threads = [threading.Thread(target=_stream, args=(url, 3000, stop, out)) for out in streams]
    for thread in threads:
        thread.start()
    while not all("first_token_s" in out for out in streams):
        time.sleep(0.05)
    health: list[float] = []
    refused: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            health.append(time.perf_counter() - start)
            start = time.perf_counter()
            bad = client.post("/v1/chat/completions", json={"messages": "not a list"})
            assert bad.status_code in (400, 422), bad.status_code
            refused.append(time.perf_counter() - start)
            time.sleep(0.05)
        ninth: dict[str, Any] = {}
        _stream(url, 1, threading.Event(), ninth)
        bursts = [_burst(url) for _ in range(5)]
    stop.set()
    for thread in threads:
        thread.join(60)
    tokens = sum(out["pieces"] for out in streams)
    span = max(out["seconds"] for out in streams)
    return {
        "healthz_p50_ms": round(1000 * statistics.median(health), 1),
        "healthz_p95_ms": round(1000 * statistics.quantiles(health, n=20)[-1], 1),
        "refusal_p50_ms": round(1000 * statistics.median(refused), 1),
        "refusal_p95_ms": round(1000 * statistics.quantiles(refused, n=20)[-1], 1),
        "ninth_ttft_s": round(ninth["first_token_s"], 3),
        "burst_slowest_s": round(statistics.median(bursts), 3),
        "stream_tok_s": round(tokens / span, 1),
        "samples": len(health),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="probing time per server")
    parser.add_argument("--interval", type=float, default=0.02, help="the variant's, in seconds")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    variant = f"interval_{args.interval * 1000:g}ms"
    runs: dict[str, list[dict[str, Any]]] = {"shipped_5ms": [], variant: []}
    with tempfile.TemporaryDirectory(prefix="loop-share-") as tmp:
        for round_index in range(args.rounds):
            for kind, interval in (("shipped_5ms", None), (variant, args.interval)):
                process, url = _start(interval, Path(tmp) / f"{kind}-{round_index}")
                try:
                    figures = _measure(url, args.seconds)
                finally:
                    process.kill()  # its streams' clients are gone; no drain to wait for
                    process.wait(30)
                logger.info("%s round %d: %s", kind, round_index + 1, figures)
                runs[kind].append(figures)
    keys = list(runs["shipped_5ms"][0])
    medians = {
        kind: {key: statistics.median(run[key] for run in kind_runs) for key in keys}
        for kind, kind_runs in runs.items()
    }
    ratios = {
        key: round(medians[variant][key] / medians["shipped_5ms"][key], 2)
        for key in keys
        if medians["shipped_5ms"][key]
    }
    result = {"medians": medians, "variant_over_shipped": ratios, "runs": runs}
    summary = {"medians": medians, "variant_over_shipped": ratios}
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
