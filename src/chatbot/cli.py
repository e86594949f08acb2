"""``chatbot ui | serve | chat | bench | keys``: flags come from the settings models."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic_settings import BaseSettings

from chatbot.config import (
    AuthSettings,
    EngineSettings,
    LimitSettings,
    LogSettings,
    ServerSettings,
    StoreSettings,
    UISettings,
    load,
)
from chatbot.errors import ChatbotError, ConfigurationError
from chatbot.settings_cli import add_flags, settings_from

logger = logging.getLogger("chatbot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot", description="An LLM chatbot: Streamlit monolith or FastAPI microservices."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    model: type[BaseSettings]
    ui = commands.add_parser("ui", help="the Streamlit UI (in-process model, or --backend URL)")
    for model in (UISettings, EngineSettings, StoreSettings, LogSettings):
        add_flags(ui, model)

    serve = commands.add_parser("serve", help="the FastAPI backend")
    for model in (ServerSettings, EngineSettings, StoreSettings, LogSettings):
        add_flags(serve, model)

    chat = commands.add_parser("chat", help="chat in the terminal (stdin: one message a line)")
    for model in (UISettings, EngineSettings, LogSettings):
        add_flags(chat, model)
    chat.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="longest reply, in tokens [default: CHATBOT_DEFAULT_MAX_TOKENS, at most "
        "CHATBOT_MAX_TOKENS_CAP]",
    )

    from chatbot.bench import add_bench_arguments

    bench = commands.add_parser("bench", help="load-test an OpenAI-compatible server or an engine")
    add_bench_arguments(bench)
    add_flags(bench, LogSettings)

    from chatbot.keys_cli import add_keys_parser

    add_keys_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        level = settings_from(args, LogSettings).log_level
        _configure_logging(level or ("WARNING" if args.command in ("chat", "keys") else "INFO"))
        return _dispatch(args)
    except ConfigurationError as exc:
        sys.stderr.write(f"chatbot: {exc.message}\n")
        return 2
    except ChatbotError as exc:
        sys.stderr.write(f"chatbot: {exc.message}\n")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "chat":
            return _chat(args)
        case "serve":
            from chatbot.api.server import run_server

            return run_server(
                settings_from(args, ServerSettings),
                settings_from(args, EngineSettings),
                settings_from(args, StoreSettings),
                settings_from(args, LimitSettings),
                settings_from(args, AuthSettings),
            )
        case "keys":
            from chatbot.keys_cli import run_keys

            return run_keys(args)
        case "bench":
            from chatbot.bench import run_bench

            return run_bench(args)
        case "ui":
            from chatbot.ui.launcher import launch_ui

            return launch_ui(
                settings_from(args, UISettings),
                settings_from(args, EngineSettings),
                settings_from(args, StoreSettings),
            )
    raise AssertionError(args.command)


def _chat(args: argparse.Namespace) -> int:
    from chatbot.domain import GenerationParams
    from chatbot.errors import InvalidRequestError
    from chatbot.service.params import resolve_params
    from chatbot.terminal import BackendReplies, EngineReplies, run_terminal_chat

    ui = settings_from(args, UISettings)
    history = load(StoreSettings).data_folder() / "chat_history"
    try:
        asked = (
            None if args.max_tokens is None else GenerationParams(max_new_tokens=args.max_tokens)
        )
        # The one rule of every path: over the cap is refused, naming the cap.
        params = resolve_params(asked, settings_from(args, LimitSettings), param="--max-tokens")
    except (ValueError, InvalidRequestError) as exc:
        raise ConfigurationError(f"--max-tokens: {exc}") from None
    if ui.backend_url:
        key = ui.backend_api_key or settings_from(args, ServerSettings).api_key
        backend = BackendReplies(ui.backend_url, key.get_secret_value() if key else None)
        return run_terminal_chat(backend, params, history_file=history)
    from chatbot.engine import create_engine
    from chatbot.spinner import Spinner

    engine = create_engine(settings_from(args, EngineSettings))
    try:
        if sys.stdin.isatty():
            with Spinner("Loading the model", sys.stderr):
                engine.load()
        else:
            engine.load()
        return run_terminal_chat(EngineReplies(engine), params, history_file=history)
    finally:
        # Join the model thread before the interpreter tears down torch: exiting with it
        # alive aborted the process now and then ("terminate called without an active
        # exception", exit 134).
        engine.close()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
