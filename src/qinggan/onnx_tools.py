"""ONNX graph tools the converter and the trainer share, without torch: int8 quantisation
(one policy, below), the names of a graph's weight MatMuls, operator counts and opset.

**int8 policy.** Every int8 graph in qinggan is made by :func:`quantize_int8`: ONNX
Runtime dynamic quantisation (u8 activations, scaled per call) of the MatMul weights
(and, in fused graphs, ``Attention``/``Gemm``), with per-channel weight scales
(per-tensor scales moved ~2% of dev labels, per-channel < 1%). The weight type defaults
to unsigned 8-bit (``u8``): with u8 activations x s8 weights the AVX2 kernels'
``vpmaddubsw`` can saturate on CPUs without VNNI (onnxruntime #6004, #14642), so a u8
graph gives the same labels on AVX2, AVX-512 and VNNI machines. Two parameters are per
caller, and each is recorded in the bundle's manifest:

- ``qinggan convert`` uses the default (:data:`CONVERT_INT8`): u8, embeddings fp32 (a
  lookup costs no compute; quantising it only loses accuracy), and if the first preset
  misses the agreement gate it tries :data:`INT8_PRESETS` in order.
- ``qinggan train`` uses :data:`TRAIN_INT8`: s8 weights and an int8 embedding ``Gather``,
  how every shipped trained member was made (s8 is 2.5-4.5 ms per text faster on a VNNI
  CPU; an emulated AVX2-only CPU gave the same label agreement, see docs/model.md
  "Limitations"); names in ``keep_fp32`` leave chosen MatMuls in fp32.

Either way the int8 graph becomes a bundle's default only if it agrees with fp32 on the
caller's measured threshold.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import QingganError

WEIGHT_TYPES = ("u8", "s8")
FUSED_OPS = ("MatMul", "Attention", "Gemm")  # what a fused transformer graph computes in


@dataclass(frozen=True)
class Int8Preset:
    """One way to quantise: weight type, per-channel scales, 7-bit range, embeddings."""

    weights: str = "u8"
    per_channel: bool = True
    reduce_range: bool = False
    embeddings: bool = False

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_TYPES:
            raise ValueError(f"weight type must be one of {WEIGHT_TYPES}, not {self.weights!r}")

    @property
    def name(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        return f"{self.weights} {scales}" + (" reduce-range" if self.reduce_range else "")


CONVERT_INT8 = Int8Preset("u8", per_channel=True)
TRAIN_INT8 = Int8Preset("s8", per_channel=True, embeddings=True)

# Tried in this order when the converter's first choice misses the agreement threshold.
# Which one wins depends on the model's weight and activation ranges: measured, not guessed.
INT8_PRESETS = (
    CONVERT_INT8,
    Int8Preset("u8", per_channel=False),
    Int8Preset("s8", per_channel=True),
    Int8Preset("u8", per_channel=True, reduce_range=True),
)


def weight_matmuls(path: Path) -> list[str]:
    """Names of the graph's MatMul nodes with a constant weight (what int8 quantises)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def matching_matmuls(path: Path, patterns: Sequence[str]) -> list[str]:
    """Weight MatMuls whose name contains one of ``patterns``; every pattern must match."""
    if not patterns:
        return []
    kept = [n for n in weight_matmuls(path) if any(p in n for p in patterns)]
    unmatched = [p for p in patterns if not any(p in n for n in kept)]
    if unmatched:
        raise QingganError(f"no weight MatMul matches {', '.join(map(repr, unmatched))}")
    return kept


def quantize_int8(
    fp32: Path,
    out: Path,
    preset: Int8Preset = CONVERT_INT8,
    *,
    ops: Sequence[str] = FUSED_OPS,
    keep_fp32: Sequence[str] = (),
) -> dict[str, Any]:
    """Write a dynamically quantised copy of ``fp32`` to ``out``; returns the settings used.

    MatMuls whose node name contains one of ``keep_fp32`` (e.g. ``layers.4/fo/``) stay
    fp32: dynamic int8 gives each activation tensor one scale, and a layer whose inputs
    carry a few huge values loses most of its resolution.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = matching_matmuls(fp32, keep_fp32)
    op_types = [*ops, "Gather"] if preset.embeddings else list(ops)
    with _quiet_quantizer():
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QUInt8 if preset.weights == "u8" else QuantType.QInt8,
            per_channel=preset.per_channel,
            reduce_range=preset.reduce_range,
            op_types_to_quantize=op_types,
            nodes_to_exclude=kept,
            # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape
            # inference; every float tensor in these graphs is fp32.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "activations": "u8 (dynamic)",
        "weights": preset.weights,
        "per_channel": preset.per_channel,
        "reduce_range": preset.reduce_range,
        "ops": op_types,
        **({"kept_fp32": kept} if kept else {}),
    }


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantiser logs every skipped node and "consider pre-processing" at INFO/WARNING."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each operator type the graph at ``path`` has."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(node.op_type for node in model.graph.node))


def opset_of(path: Path) -> int:
    """The default-domain opset the graph at ``path`` was written for (0 if none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
