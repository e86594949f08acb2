"""`chatbot bench --engine ENGINE ...` for any in-process engine, the openvino one included.

`chatbot bench --engine` offers only transformers and llamacpp; the measuring code
(``chatbot.bench.cli.run_bench``, ``engine_load``) already works for any engine the factory
builds, so this entry point lifts that restriction and runs the same code:

    .venv/bin/python benchmarks/bench_engine.py --engine openvino --concurrency 1,8,16 ...
"""

from __future__ import annotations

import argparse
import logging
import sys

from chatbot.bench.cli import add_bench_arguments, run_bench
from chatbot.config import EngineKind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_bench_arguments(parser)
    for action in parser._actions:  # the one flag whose choices are narrower than the factory's
        if action.dest == "engine":
            action.choices = [kind.value for kind in EngineKind if kind.value != "openai"]
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
