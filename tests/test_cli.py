"""``chatbot chat`` and the CLI's settings handling, run as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.cli import build_parser
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import SCRIPTED

CHATBOT = [sys.executable, "-m", "chatbot"]
# For the commands and Ctrl-C, not the model: the scripted engine, whose replies run to
# --max-tokens (300 tokens at 0.05 s: 15 s, far longer than a signal takes to arrive).
NO_MODEL = {**SCRIPTED, "CHATBOT_SCRIPTED_REPLY_TOKENS": "100000"}


def run_chat(
    stdin: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHATBOT, "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def test_flags_come_from_the_settings() -> None:
    parser = build_parser()
    help_text = {
        name: parser._subparsers._group_actions[0].choices[name].format_help()  # type: ignore[union-attr]
        for name in ("ui", "serve", "chat")
    }
    assert "--backend" in help_text["ui"] and "CHATBOT_BACKEND_URL" in help_text["ui"]
    assert "--port" in help_text["serve"] and "CHATBOT_PORT" in help_text["serve"]
    assert "--host" in help_text["serve"]
    assert "--backend" in help_text["chat"]


@pytest.mark.slow
def test_piped_hello_prints_a_reply_and_exits_zero() -> None:
    result = run_chat("Hello\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr
    assert "Loading weights" not in result.stderr


@pytest.mark.slow
def test_commands_and_save(tmp_path: Path) -> None:
    target = tmp_path / "chat.csv"
    result = run_chat(
        f"/system Answer in one word.\nWhat colour is the sky?\n/save {target}\n/clear\n"
        f"/save {tmp_path / 'empty.json'}\n/save notes.txt\n/bogus\n",
        "--max-tokens",
        "8",
        env=NO_MODEL,
    )
    assert result.returncode == 0, result.stderr
    assert "[system prompt set]" in result.stdout
    assert "[saved 2 messages" in result.stdout
    assert "[history cleared]" in result.stdout
    assert "[saved 0 messages" in result.stdout
    assert "cannot tell the format" in result.stdout
    assert "commands:" in result.stdout
    rows = target.read_text().splitlines()
    assert rows[0] == "is_user,text"
    assert rows[1] == "True,What colour is the sky?"
    assert rows[2].startswith("False,")


def test_an_invalid_setting_fails_at_start_with_its_name() -> None:
    result = run_chat("Hello\n", env={"CHATBOT_ENGINE": "tensorrt"})
    assert result.returncode == 2
    assert "CHATBOT_ENGINE" in result.stderr
    assert "transformers, llamacpp, openai" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_model_fails_at_start() -> None:
    result = run_chat("Hello\n", env={"CHATBOT_MODEL": "/nonexistent/model.gguf"})
    assert result.returncode == 2
    assert "no such GGUF file" in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_reply_but_not_the_chat() -> None:
    process = subprocess.Popen(
        [*CHATBOT, "chat", "--max-tokens", "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **NO_MODEL},
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(f"{LONG_PROMPT}\n")
    process.stdin.flush()
    first = process.stdout.read(1)  # the reply is streaming: 300 tokens are far from done
    assert first
    process.send_signal(signal.SIGINT)
    process.stdin.write("Say OK.\n")
    process.stdin.close()
    process.stdin = None  # communicate() must not flush the closed pipe
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    # Ctrl-C stopped the first reply (marked so), and the second message was answered.
    stopped, marker, after = (first + out).partition("[stopped]")
    assert marker and stopped.strip(), out
    assert after.strip(), out
