"""One line naming this machine's CPU and the flags that change what the engines run.

Benchmarks record it beside their figures and CI prints it first, so a result or a failure that
depends on the hardware shows as such: ``python -m chatbot.bench.machine``.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The instruction sets the engines' kernels choose between (llama.cpp, OpenVINO, torch).
RELEVANT_FLAGS = ("avx2", "avx512", "amx", "fma", "f16c", "avx_vnni")


def describe() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = sorted({f for f in value.split() if f.startswith(RELEVANT_FLAGS)})
            break
    facts: dict[str, Any] = {"cpu": model, "cores": os.cpu_count(), "flags": flags}
    try:
        from chatbot.engine.openvino_precision import ask_cpu_plugin

        plugin = ask_cpu_plugin()
    except ImportError:
        return facts
    facts["openvino_capabilities"] = list(plugin.capabilities)
    facts["openvino_default_precision"] = plugin.default_precision
    return facts


def one_line(facts: dict[str, Any]) -> str:
    text = f"CPU: {facts['cpu']}, {facts['cores']} cores, flags {' '.join(facts['flags']) or '-'}"
    if "openvino_capabilities" in facts:
        text += (
            f"; OpenVINO CPU plugin: {', '.join(facts['openvino_capabilities'])}, "
            f"default precision {facts['openvino_default_precision']}"
        )
    return text


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%s", one_line(describe()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
