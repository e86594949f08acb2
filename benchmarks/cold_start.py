"""Cold start of ``chatbot serve`` on the default engine: from the IR copy against the GGUF.

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/cold_start.py --runs 4

Each run starts ``chatbot serve`` as a fresh process and times process start to ``/healthz`` 200
(imports, settings, uvicorn) and to ``/readyz`` 200 (the model loaded and warm, the store open).
The two kinds alternate, so both see the same minutes of a shared machine: ``ir`` loads the IR
copy in the cache (made first if missing), ``gguf`` reads the GGUF with an empty cache and
``CHATBOT_OPENVINO_IR_COPY=false``. Prints the medians and their ratio; ``--output`` keeps the runs.
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
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def one_start(env: dict[str, str]) -> dict[str, float]:
    """Seconds from process start to /healthz 200 and to /readyz 200 (polled every 50 ms)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        full_env = {**os.environ, "CHATBOT_DATA_DIR": data, "CHATBOT_LOG_LEVEL": "WARNING", **env}
        command = [str(ROOT / ".venv" / "bin" / "chatbot"), "serve", "--port", str(port)]
        began = time.monotonic()
        process = subprocess.Popen(
            command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        health: float | None = None
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"chatbot serve exited with {process.returncode}")
                try:
                    base = f"http://127.0.0.1:{port}"
                    if health is None and httpx.get(f"{base}/healthz", timeout=1).is_success:
                        health = time.monotonic() - began
                    if httpx.get(f"{base}/readyz", timeout=1).is_success:
                        ready = time.monotonic() - began
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(30)
    return {"healthz_s": round(health or ready, 2), "readyz_s": round(ready, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="starts of each kind")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    made = subprocess.run(
        [sys.executable, "-m", "chatbot.engine.openvino_ir"], check=False, capture_output=True
    )
    if made.returncode != 0:
        logger.error("could not make the IR copy: %s", made.stderr.decode()[-2000:])
        return 1
    empty_cache = tempfile.mkdtemp(prefix="cold-start-cache-")
    kinds = {
        "ir": {},
        "gguf": {"CHATBOT_CACHE_DIR": empty_cache, "CHATBOT_OPENVINO_IR_COPY": "false"},
    }
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for index in range(args.runs):
        for kind, env in kinds.items():
            result = one_start(env)
            runs[kind].append(result)
            logger.info("run %d %s: %s", index + 1, kind, result)
    medians = {
        kind: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for kind, results in runs.items()
    }
    summary = {
        "runs": runs,
        "medians": medians,
        "readyz_ir_over_gguf": round(medians["ir"]["readyz_s"] / medians["gguf"]["readyz_s"], 2),
        "loadavg_at_end": os.getloadavg(),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
