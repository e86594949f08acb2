"""Which precision the OpenVINO engine asks for: the order, the refusals, the messages."""

from __future__ import annotations

import logging

import pytest

from chatbot.config import OpenVINOPrecision
from chatbot.engine import openvino_precision as precision
from chatbot.errors import ConfigurationError

AVX2 = precision.CPUPlugin("an AVX2 CPU", ("FP32", "INT8", "BIN", "EXPORT_IMPORT"), "f32")
BF16_CPU = precision.CPUPlugin("a BF16 CPU", ("FP32", "BF16", "INT8"), "bf16")


def test_auto_tries_f32_first_then_what_the_plugin_reports_then_its_defaults() -> None:
    assert precision.candidates(OpenVINOPrecision.AUTO, AVX2) == [precision.F32, precision.PLUGIN]
    on_bf16 = precision.candidates(OpenVINOPrecision.AUTO, BF16_CPU)
    assert on_bf16 == [precision.F32, precision.BF16, precision.PLUGIN]
    # Each configuration pairs the KV cache with its own inference precision: the
    # paged-attention kernel refuses a cache of another type.
    for config in on_bf16[:-1]:
        props = config.properties
        assert props["KV_CACHE_PRECISION"] == props["INFERENCE_PRECISION_HINT"]
    assert precision.PLUGIN.properties == {}  # nothing forced


def test_forcing_a_precision_the_cpu_lacks_names_what_it_has() -> None:
    with pytest.raises(ConfigurationError) as raised:
        precision.candidates(OpenVINOPrecision.BF16, AVX2)
    message = str(raised.value)
    assert "CHATBOT_OPENVINO_PRECISION=bf16" in message and "BF16" in message
    assert "an AVX2 CPU" in message and "f32, plugin" in message
    assert precision.candidates(OpenVINOPrecision.BF16, BF16_CPU) == [precision.BF16]
    assert precision.candidates(OpenVINOPrecision.PLUGIN, AVX2) == [precision.PLUGIN]


def test_a_refusal_is_logged_and_the_next_configuration_tried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def build(properties: dict[str, object]) -> str:
        if properties.get("KV_CACHE_PRECISION") == "f32":
            raise RuntimeError(
                "Exception from src/inference/src/cpp/core.cpp:117:\n"
                "Check 'key_cache_type == ov::element::bf16' failed: expect kvcache type bf16"
            )
        return "pipeline"

    with caplog.at_level(logging.WARNING):
        built, config = precision.first_accepted(
            [precision.F32, precision.BF16], build, what="model.gguf"
        )
    assert (built, config) == ("pipeline", precision.BF16)
    assert "refused model.gguf with f32 precision" in caplog.text
    assert "expect kvcache type bf16" in caplog.text and "Exception from src" not in caplog.text
    assert "trying the next configuration" in caplog.text


def test_when_all_are_refused_alike_the_cause_is_not_the_precision() -> None:
    def same(properties: dict[str, object]) -> str:
        raise RuntimeError("unsupported architecture 'mamba'")

    with pytest.raises(precision.AllRefused) as alike:
        precision.first_accepted([precision.F32, precision.PLUGIN], same, what="m")
    assert not alike.value.precision_dependent
    assert alike.value.cause() == "unsupported architecture 'mamba'"

    def differs(properties: dict[str, object]) -> str:
        raise RuntimeError(f"refused {properties.get('KV_CACHE_PRECISION', 'u8')}")

    with pytest.raises(precision.AllRefused) as each:
        precision.first_accepted([precision.F32, precision.PLUGIN], differs, what="m")
    assert each.value.precision_dependent
    assert "with f32 precision: refused f32" in each.value.cause()
    assert "with plugin precision: refused u8" in each.value.cause()


def test_the_plugin_is_asked_what_this_cpu_supports() -> None:
    pytest.importorskip("openvino")
    plugin = precision.ask_cpu_plugin()
    assert "FP32" in plugin.capabilities  # every CPU plugin runs f32
    assert plugin.default_precision in {"f32", "bf16", "f16"}
    assert plugin.device_name
    assert precision.supported(plugin)[0] == "f32"
