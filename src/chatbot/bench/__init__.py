"""``chatbot bench``: a load generator for OpenAI-compatible servers and for raw engines."""

from chatbot.bench.cli import add_bench_arguments, run_bench

__all__ = ["add_bench_arguments", "run_bench"]
