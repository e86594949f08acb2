"""Time from ``chatbot ui`` start to the first answer in a real browser (`make run`, issue 12).

It starts ``CHECKOUT/.venv/bin/chatbot ui`` (what ``make run`` runs after installing), opens the
page in Debian's Chromium as soon as Streamlit answers its health check, sends one message and
records:

- ``health_s``: process start to Streamlit's health check answering;
- ``page_to_first_text_s``: page opened to the first reply text on screen (the model loads at UI
  start, so this is what a person waits after the page appears);
- ``page_to_answer_s``: page opened to the finished reply (the stats line is drawn);
- ``start_to_answer_s``: process start to the finished reply.

    .venv/bin/python benchmarks/first_answer.py [--checkout PATH] [--out FILE]

With ``benchmarks/fresh_clone.sh`` it runs on a fresh clone after a timed ``make install``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

logger = logging.getLogger("first_answer")
ROOT = Path(__file__).resolve().parents[1]
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
TIMEOUT_MS = 600_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_health(url: str, process: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chatbot ui exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("chatbot ui never answered its health check")


def measure(checkout: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="first-answer-") as data:
        env = {**os.environ, "CHATBOT_DATA_DIR": data}
        env.pop("PYTHONPATH", None)
        log = Path(data) / "ui.log"
        started = time.perf_counter()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(checkout / ".venv/bin/chatbot"), "ui", "--host", "127.0.0.1", "--port",
                 str(port)],
                cwd=checkout, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_health(url, process)
            health = time.perf_counter() - started
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
                )
                page = browser.new_page()
                opened = time.perf_counter()
                page.goto(url)
                box = page.get_by_test_id("stChatInputTextArea")
                box.wait_for(timeout=TIMEOUT_MS)
                box.fill("Hello! Who are you?")
                box.press("Enter")
                bubbles = page.get_by_test_id("stChatMessage")
                reply = bubbles.nth(1).get_by_test_id("stMarkdownContainer").first
                deadline = time.monotonic() + TIMEOUT_MS / 1000
                while time.monotonic() < deadline:
                    with contextlib.suppress(Exception):
                        if reply.inner_text(timeout=200).strip():
                            break
                    time.sleep(0.02)
                first_text = time.perf_counter()
                page.get_by_text(STATS).first.wait_for(timeout=TIMEOUT_MS)
                answered = time.perf_counter()
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
            logger.info("ui log tail:\n%s", log.read_text(errors="replace")[-1500:])
    return {
        "health_s": round(health, 2),
        "page_to_first_text_s": round(first_text - opened, 2),
        "page_to_answer_s": round(answered - opened, 2),
        "start_to_answer_s": round(answered - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = measure(args.checkout.resolve())
    logger.info("%s", json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
