"""Which inference and KV-cache precision the OpenVINO engine asks of the CPU plugin.

The CPU plugin picks its inference precision from the CPU (bf16 where the CPU has BF16, f32
elsewhere) and its paged-attention kernel accepts only a KV cache that matches it: forcing an
f32 cache made the engine fail to start on an AMD EPYC with AVX-512 BF16, and a bf16 cache is
refused on an AVX2-only CPU (``Check 'all_of(f32, key_cache_type, value_cache_type)'``, seen
here). So nothing is forced blind: each configuration is tried in order, a refusal is logged and
the next one tried, and the one that loaded is logged with what the plugin reported.

``auto`` tries f32 first: f32 inference with an f32 cache and no dynamic quantization of
activations is the faithful one (mean KL 0.00001 against transformers fp32 on the embedded
model, BENCHMARKS.md) and keeps batched greedy replies equal to unbatched ones (a u8 cache does
not: 1 of 4 prompts parted). Every CPU plugin runs f32, so the later entries are for a plugin
that refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chatbot.config import OpenVINOPrecision
from chatbot.errors import ConfigurationError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class PrecisionConfig:
    """One configuration to try: its name in logs and errors, and the plugin properties."""

    name: str
    properties: dict[str, Any] = field(default_factory=dict)


F32 = PrecisionConfig(
    "f32",
    {
        "INFERENCE_PRECISION_HINT": "f32",
        "KV_CACHE_PRECISION": "f32",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
    },
)
BF16 = PrecisionConfig("bf16", {"INFERENCE_PRECISION_HINT": "bf16", "KV_CACHE_PRECISION": "bf16"})
F16 = PrecisionConfig("f16", {"INFERENCE_PRECISION_HINT": "f16", "KV_CACHE_PRECISION": "f16"})
PLUGIN = PrecisionConfig("plugin")

_BY_SETTING = {
    OpenVINOPrecision.F32: (F32, "FP32"),
    OpenVINOPrecision.BF16: (BF16, "BF16"),
    OpenVINOPrecision.F16: (F16, "FP16"),
}


@dataclass(frozen=True)
class CPUPlugin:
    """What the CPU plugin says of this machine, asked once per load."""

    device_name: str
    capabilities: tuple[str, ...]
    default_precision: str

    def describe(self) -> str:
        return (
            f"{self.device_name} (capabilities {', '.join(self.capabilities) or 'none'}; "
            f"default inference precision {self.default_precision})"
        )


def ask_cpu_plugin() -> CPUPlugin:
    import openvino

    core = openvino.Core()

    def get(name: str, default: object) -> object:
        try:
            return core.get_property("CPU", name)
        except Exception:  # an older plugin without this property
            return default

    capabilities = get("OPTIMIZATION_CAPABILITIES", [])
    return CPUPlugin(
        device_name=str(get("FULL_DEVICE_NAME", "CPU")),
        capabilities=tuple(str(c) for c in capabilities) if isinstance(capabilities, list) else (),
        default_precision=_type_name(get("INFERENCE_PRECISION_HINT", "unknown")),
    )


def _type_name(value: object) -> str:
    """``<Type: 'float32'>`` (an ``ov.Type``) or a string, as the names this module uses."""
    text = str(getattr(value, "get_type_name", lambda: value)())
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)


def candidates(setting: OpenVINOPrecision, plugin: CPUPlugin) -> list[PrecisionConfig]:
    """The configurations to try, in order, for ``CHATBOT_OPENVINO_PRECISION=setting``."""
    if setting is OpenVINOPrecision.AUTO:
        order = [F32]
        if "BF16" in plugin.capabilities:
            order.append(BF16)
        if "FP16" in plugin.capabilities:
            order.append(F16)
        return [*order, PLUGIN]
    if setting is OpenVINOPrecision.PLUGIN:
        return [PLUGIN]
    config, capability = _BY_SETTING[setting]
    if capability not in plugin.capabilities:
        raise ConfigurationError(
            f"CHATBOT_OPENVINO_PRECISION={setting.value}: the OpenVINO CPU plugin does not "
            f"support {capability} on this machine: {plugin.describe()}; use auto, or one of "
            f"{', '.join(supported(plugin))}"
        )
    return [config]


def supported(plugin: CPUPlugin) -> list[str]:
    """The settings whose precision the plugin reports it supports (``plugin`` always)."""
    named = [s.value for s, (_, cap) in _BY_SETTING.items() if cap in plugin.capabilities]
    return [*named, OpenVINOPrecision.PLUGIN.value]


@dataclass(frozen=True)
class Refusal:
    config: PrecisionConfig
    message: str


class AllRefused(Exception):
    """No configuration loaded; ``refusals`` says why each one did not."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__("; ".join(f"{r.config.name}: {r.message}" for r in refusals))
        self.refusals = list(refusals)

    def cause(self) -> str:
        """One message if every configuration failed alike (then precision is not the cause)."""
        messages = {r.message for r in self.refusals}
        if len(messages) == 1:
            return messages.pop()
        return "; ".join(f"with {r.config.name} precision: {r.message}" for r in self.refusals)

    @property
    def precision_dependent(self) -> bool:
        return len({r.message for r in self.refusals}) > 1


def first_accepted(
    configs: Sequence[PrecisionConfig],
    build: Callable[[dict[str, Any]], T],
    *,
    what: str,
) -> tuple[T, PrecisionConfig]:
    """``build(properties)`` with each configuration in turn until one is accepted."""
    refusals: list[Refusal] = []
    for config in configs:
        try:
            built = build(dict(config.properties))
        except Exception as exc:  # the plugin raises RuntimeError with its check's text
            message = native_message(exc)
            refusals.append(Refusal(config, message))
            remaining = len(configs) - len(refusals)
            logger.warning(
                "OpenVINO refused %s with %s precision (%s)%s",
                what,
                config.name,
                message,
                "; trying the next configuration" if remaining else "",
            )
            continue
        return built, config
    raise AllRefused(refusals)


def native_message(exc: BaseException) -> str:
    """The informative part of an OpenVINO exception: its last lines, without the call trail."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from src/")]
    text = " ".join(useful or lines) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."
