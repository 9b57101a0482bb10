"""int8 variant: ONNX Runtime dynamic quantisation of the fp32 graph.

Defaults follow ONNX Runtime's and optimum's AVX2 preset: unsigned 8-bit weights
(``u8``) with per-channel scales. With u8 activations x u8 weights the AVX2 kernels do
not saturate the way u8 x s8 ``vpmaddubsw`` can on CPUs without VNNI (onnxruntime
#6004, #14642), so the same file gives the same labels on AVX2, AVX-512 and VNNI
machines. ``s8`` weights are faster on VNNI machines; ``reduce_range`` (7-bit weights)
is the other guard against saturation. Embedding lookups stay fp32: they cost no
compute and quantising them only loses accuracy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHT_TYPES = ("u8", "s8")
QUANTIZED_OPS = ["MatMul", "Attention", "Gemm"]


@dataclass(frozen=True)
class Int8Preset:
    """One way to quantise: weight type, per-channel scales, 7-bit range."""

    weights: str = "u8"
    per_channel: bool = True
    reduce_range: bool = False

    @property
    def name(self) -> str:
        scales = "per-channel" if self.per_channel else "per-tensor"
        return f"{self.weights} {scales}" + (" reduce-range" if self.reduce_range else "")


# Tried in this order when the first choice misses the agreement threshold. Which one
# wins depends on the model's weight and activation ranges, so we measure, not guess.
INT8_PRESETS = (
    Int8Preset("u8", per_channel=True),
    Int8Preset("u8", per_channel=False),
    Int8Preset("s8", per_channel=True),
    Int8Preset("u8", per_channel=True, reduce_range=True),
)


def quantize_int8(
    fp32: Path,
    out: Path,
    *,
    weight_type: str = "u8",
    per_channel: bool = True,
    reduce_range: bool = False,
) -> dict[str, Any]:
    """Write a dynamically quantised copy of ``fp32`` to ``out``; returns the settings used."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {WEIGHT_TYPES}, not {weight_type!r}")
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))  # the quantiser logs every skipped node at INFO
    try:
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QUInt8 if weight_type == "u8" else QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=QUANTIZED_OPS,
            # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape
            # inference; every float tensor in these graphs is fp32.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        logger.setLevel(level)
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "activations": "u8 (dynamic)",
        "weights": weight_type,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "ops": QUANTIZED_OPS,
    }
