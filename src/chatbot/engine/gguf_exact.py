"""Give OpenVINO's graph of a GGUF model the exact weights the file holds.

OpenVINO GenAI's GGUF reader keeps 4-bit weights 4-bit, but stores each block's offset as a 4-bit
zero point, and Q4_1 (like every format with a per-block minimum) holds a float there, which the
reader rounds. On the embedded Q4_1 model that makes another model: mean KL 0.50 per token against
transformers' fp32 dequantization of the same file, top-1 agreement 67% (``benchmarks/
fidelity.py``). With the offsets restored as f16 zero points: KL 0.00001 and 100% top-1, at the
same speed, because the CPU plugin still decodes the same 4-bit weights inside its matmul kernels
(BENCHMARKS.md). An int8 re-export from fp32 weights (optimum-intel) measured KL 0.005, costs
speed, and its optimum-intel pins transformers below 5.6; this keeps the file's own weights.

In the graph each compressed weight is ``Constant(q) -> Convert -> Subtract(zero point) ->
Multiply(scale) -> Reshape``. The GGUF tensor it came from is found by comparing the first rows
(the reader reorders llama's q/k rows per head, so that order is compared too), the exact offset of
every block is fitted from the file's own dequantization (gguf-py), and the result is checked to
within 1% of a quantization step before it replaces the zero point. A weight that matches no tensor
keeps the reader's rounding and is named in the report, so the caller can decide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

# A restored weight may differ from the file's by this share of its block's quantization step
# (f16 zero points hold about 1/200 of a step at the largest 4-bit codes).
TOLERANCE_OF_A_STEP = 0.01
_FINGERPRINT_ROWS = 64

Array = npt.NDArray[np.float32]


@dataclass
class Report:
    """What :func:`restore` did to the graph's compressed weights."""

    restored: list[str] = field(default_factory=list)  # offsets were rounded; now exact
    exact: list[str] = field(default_factory=list)  # the reader's graph already held them
    unmatched: list[str] = field(default_factory=list)  # left as the reader built them

    @property
    def faithful(self) -> bool:
        return not self.unmatched


@dataclass
class _Compressed:
    """One ``q -> Convert -> Subtract(z) -> Multiply(s)`` weight in the graph."""

    subtract: Any
    multiply: Any
    q: Array  # [rows, blocks, group]
    z: Array  # [rows, blocks, 1]
    s: Array  # [rows, blocks, 1]

    @property
    def shape(self) -> tuple[int, int]:
        rows, blocks, group = self.q.shape
        return rows, blocks * group

    def weights(self, rows: int | None = None) -> Array:
        q, z, s = self.q[:rows], self.z[:rows], self.s[:rows]
        out: Array = (s * (q - z)).reshape(q.shape[0], -1)
        return out


@dataclass
class _Tensor:
    """A quantized GGUF tensor, read lazily; ``heads`` reorders rows as the reader does."""

    name: str
    raw: Any  # gguf ReaderTensor
    heads: int | None = None
    _heads_of_rows: dict[int, Array] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.name if self.heads is None else f"{self.name} (rows per head reordered)"

    def first_rows(self, count: int) -> Array:
        """The first ``count`` rows, kept: every graph weight of this shape compares them."""
        if count not in self._heads_of_rows:
            self._heads_of_rows[count] = self.rows(count)
        return self._heads_of_rows[count]

    def rows(self, count: int | None = None) -> Array:
        import gguf

        data = self.raw.data if count is None else self.raw.data[:count]
        weights: Array = gguf.quants.dequantize(data, self.raw.tensor_type).astype(np.float32)
        weights = weights.reshape(weights.shape[0], -1)
        if self.heads is None:
            return weights
        heads = self.heads if count is None else 1
        per_head = weights.shape[0] // heads
        reordered: Array = (
            weights.reshape(heads, per_head // 2, 2, -1).swapaxes(1, 2).reshape(weights.shape)
        )
        return reordered


def restore(model: Any, gguf_path: Path) -> Report:
    """Replace the rounded zero points of ``model`` (an ``ov.Model`` read from ``gguf_path``)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    candidates = _candidates(reader)
    report = Report()
    for weight in _compressed_weights(model):
        matches = candidates.get(weight.shape, [])
        tensor = _closest(weight, matches)
        if tensor is None:
            report.unmatched.append(f"a {weight.shape} weight")
            continue
        name, exact = tensor.label, tensor.rows()
        if _within_tolerance(weight.weights(), exact, weight.s):
            report.exact.append(name)
            continue
        if not _replace(weight, exact):
            report.unmatched.append(name)
            continue
        report.restored.append(name)
    model.validate_nodes_and_infer_types()
    logger.info(
        "GGUF weights in the OpenVINO graph: %d restored to the file's values, %d already "
        "exact, %d left rounded%s",
        len(report.restored),
        len(report.exact),
        len(report.unmatched),
        f" ({', '.join(report.unmatched[:5])})" if report.unmatched else "",
    )
    return report


def _candidates(reader: Any) -> dict[tuple[int, int], list[_Tensor]]:
    arch = _field(reader, "general.architecture")
    heads = {
        int(value)
        for key in ("attention.head_count", "attention.head_count_kv")
        if isinstance(value := _field(reader, f"{arch}.{key}"), int | np.integer)
    }
    found: dict[tuple[int, int], list[_Tensor]] = {}
    for raw in reader.tensors:
        if raw.tensor_type.name in ("F32", "F16", "BF16", "F64"):
            continue
        columns, rows = (int(n) for n in raw.shape[:2])
        entries = found.setdefault((rows, columns), [])
        entries.append(_Tensor(raw.name, raw))
        entries += [_Tensor(raw.name, raw, h) for h in sorted(heads) if rows % (2 * h) == 0]
    return found


def _field(reader: Any, key: str) -> object:
    entry = reader.fields.get(key)
    if entry is None or not entry.data:
        return None
    part = entry.parts[entry.data[0]]
    if part.dtype == np.uint8 and len(part) > 1:
        return bytes(part).decode("utf-8", "replace")
    return part[0] if len(part) == 1 else None


def _compressed_weights(model: Any) -> Iterator[_Compressed]:
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Subtract":
            continue
        q_const = _constant_behind_convert(node.input(0).get_source_output().get_node())
        z_const = _constant_behind_convert(node.input(1).get_source_output().get_node())
        targets = list(node.output(0).get_target_inputs())
        if q_const is None or z_const is None or len(targets) != 1:
            continue
        multiply = targets[0].get_node()
        if multiply.get_type_name() != "Multiply":
            continue
        scale = multiply.input(1).get_source_output().get_node()
        if scale.get_type_name() != "Constant":
            continue
        q = _values(q_const)
        if q.ndim != 3:
            continue
        z, s = _values(z_const), scale.get_data().astype(np.float32)
        if z.shape != s.shape or z.shape != (*q.shape[:2], 1):
            continue
        yield _Compressed(node, multiply, q, z, s)


def _constant_behind_convert(node: Any) -> Any:
    if node.get_type_name() != "Convert":
        return None
    source = node.input(0).get_source_output().get_node()
    return source if source.get_type_name() == "Constant" else None


def _values(const: Any) -> Array:
    """A constant's values as float32, unpacking 4-bit ones (two per byte, low nibble first)."""
    import openvino as ov

    shape = [int(n) for n in const.get_shape()]
    kind = const.get_element_type()
    if kind in (ov.Type.u4, ov.Type.i4):
        packed = np.frombuffer(const.get_data().tobytes(), dtype=np.uint8)
        nibbles = np.stack([packed & 15, packed >> 4], axis=-1).reshape(-1)
        values = nibbles[: int(np.prod(shape))].astype(np.int8)
        if kind == ov.Type.i4:
            values = np.where(values > 7, values - 16, values).astype(np.int8)
        return values.reshape(shape).astype(np.float32)
    out: Array = np.asarray(const.get_data()).astype(np.float32).reshape(shape)
    return out


def _closest(weight: _Compressed, tensors: list[_Tensor]) -> _Tensor | None:
    """The tensor whose first rows are nearest the graph's, if near enough to be the same."""
    if not tensors:
        return None
    rows = min(_FINGERPRINT_ROWS, weight.shape[0])
    graph = weight.weights(rows)
    step = float(np.abs(weight.s[:rows]).mean()) or 1.0
    scored = []
    for tensor in tensors:
        head = tensor.first_rows(rows if tensor.heads is None else _head_rows(tensor, weight))
        count = min(rows, head.shape[0])
        if head.shape[1] != graph.shape[1]:
            continue
        scored.append((float(np.abs(head[:count] - graph[:count]).mean()), tensor))
    if not scored:
        return None
    error, best = min(scored, key=lambda pair: pair[0])
    # Rounding an offset moves a weight by at most one step; another tensor is far off.
    return best if error <= step else None


def _head_rows(tensor: _Tensor, weight: _Compressed) -> int:
    assert tensor.heads is not None
    return weight.shape[0] // tensor.heads


def _within_tolerance(candidate: Array, exact: Array, scales: Array) -> bool:
    rows, blocks = scales.shape[:2]
    error = np.abs(candidate - exact).reshape(rows, blocks, -1)
    allowed = TOLERANCE_OF_A_STEP * np.abs(scales) + 1e-7
    return bool((error <= allowed).all())


def _replace(weight: _Compressed, exact: Array) -> bool:
    """Fit each block's offset (and scale, if it must) to ``exact``; swap in f16 constants."""
    from openvino import opset13

    target = exact.reshape(weight.q.shape)
    q, s = weight.q, weight.s
    safe = np.where(s != 0, s, 1.0)
    z = np.where(s != 0, (q - target / safe).mean(axis=-1, keepdims=True), weight.z)
    scale = s
    if not _within_tolerance(_dequantized(q, z, s), exact, s):
        scale, z = _fit(q, target, s)
        if not _within_tolerance(_dequantized(q, z, scale), exact, scale):
            return False
    weight.subtract.input(1).replace_source_output(opset13.constant(z.astype(np.float16)).output(0))
    if scale is not s:
        weight.multiply.input(1).replace_source_output(
            opset13.constant(scale.astype(np.float16)).output(0)
        )
    return True


def _dequantized(q: Array, z: Array, s: Array) -> Array:
    half_z = z.astype(np.float16).astype(np.float32)
    half_s = s.astype(np.float16).astype(np.float32)
    out: Array = (half_s * (q - half_z)).reshape(q.shape[0], -1)
    return out


def _fit(q: Array, target: Array, s: Array) -> tuple[Array, Array]:
    """Least squares ``target = a*q + b`` per block: scale a, zero point -b/a."""
    q_mean = q.mean(axis=-1, keepdims=True)
    t_mean = target.mean(axis=-1, keepdims=True)
    spread = ((q - q_mean) ** 2).sum(axis=-1, keepdims=True)
    slope = np.where(
        spread > 0, ((q - q_mean) * (target - t_mean)).sum(axis=-1, keepdims=True), 0.0
    ) / np.where(spread > 0, spread, 1.0)
    slope = np.where(slope != 0, slope, np.where(s != 0, s, 1.0))
    zero = q_mean - t_mean / slope
    return slope.astype(np.float32), zero.astype(np.float32)
