"""ONNX export (fp32), int8 dynamic quantisation, and the parity/agreement checks."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import QingganError
from .calibration import fit_temperature
from .model import SentimentModel

OPSET = 17
INT8_MIN_AGREEMENT = 0.99  # int8 becomes a bundle's default only if it agrees this often


def export_onnx(model: SentimentModel, path: Path, pad_id: int = 1) -> None:
    """Write ``model`` as ONNX: inputs input_ids, attention_mask (int64 [batch, sequence]),
    output logits (float [batch, labels])."""
    model.eval()
    ids = torch.tensor([[0, 10, 11, 12, 2], [0, 13, 2, pad_id, pad_id]], dtype=torch.long)
    mask = (ids != pad_id).long()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def weight_matmuls(fp32_path: Path) -> list[str]:
    """Names of the graph's MatMul nodes with a constant weight (what int8 quantises)."""
    import onnx

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    *,
    embeddings: bool = True,
    keep_fp32: Sequence[str] = (),
) -> list[str]:
    """ORT dynamic quantisation of the MatMul weights (and the embedding Gather).

    MatMuls whose node name contains one of ``keep_fp32`` (e.g. ``layers.4/fo/``) stay fp32:
    dynamic int8 quantises each activation tensor with one scale, and a layer whose inputs
    carry a few huge values loses most of its resolution. Returns the names kept in fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = weight_matmuls(fp32_path) if keep_fp32 else []  # reads the whole graph
    kept = [n for n in names if any(p in n for p in keep_fp32)]
    unmatched = [p for p in keep_fp32 if not any(p in n for n in kept)]
    if unmatched:
        raise QingganError(f"no weight MatMul matches {', '.join(map(repr, unmatched))}")
    ops = ["MatMul", "Gather"] if embeddings else ["MatMul"]
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))  # "consider pre-processing" on every call
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=ops,
            per_channel=True,  # per-tensor scales moved ~2% of dev labels; per-channel < 1%
            nodes_to_exclude=kept,
        )
    finally:
        logger.setLevel(level)
    return kept


def onnx_logits(
    path: Path, batches: list[tuple[np.ndarray, np.ndarray]], threads: int = 2
) -> np.ndarray:
    """Raw logits of the ONNX model at ``path`` for padded (ids, mask) batches."""
    from ..engine import create_session

    session = create_session(path, threads)
    out = [session.run(None, {"input_ids": i, "attention_mask": m})[0] for i, m in batches]
    return np.concatenate(out)


def default_variant(parity: dict[str, float]) -> str:
    """``int8`` if it agrees with fp32 on at least ``INT8_MIN_AGREEMENT`` of dev, else ``fp32``."""
    return "int8" if parity["int8_label_agreement_vs_fp32"] >= INT8_MIN_AGREEMENT else "fp32"


def int8_difference(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """How far int8 logits are from fp32 logits of the same texts."""
    return {
        "int8_label_agreement_vs_fp32": float((int8.argmax(1) == fp32.argmax(1)).mean()),
        "int8_max_abs_diff_vs_fp32": float(np.abs(int8 - fp32).max()),
        "int8_mean_abs_diff_vs_fp32": float(np.abs(int8 - fp32).mean()),
    }


def compare_variants(
    out_dir: Path, batches: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, threads: int
) -> tuple[np.ndarray, dict[str, float | int]]:
    """fp32 logits of ``out_dir/model.onnx`` and how its int8 graph compares on ``batches``."""
    fp32 = onnx_logits(out_dir / "model.onnx", batches, threads)
    int8 = onnx_logits(out_dir / "model.int8.onnx", batches, threads)
    return fp32, {
        **int8_difference(fp32, int8),
        "dev_texts": len(labels),
        "dev_accuracy_fp32": float((fp32.argmax(1) == labels).mean()),
        "dev_accuracy_int8": float((int8.argmax(1) == labels).mean()),
    }


def export_checked(
    model: SentimentModel,
    out_dir: Path,
    batches: list[tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    *,
    keep_fp32: Sequence[str] = (),
    threads: int = 2,
) -> tuple[float, dict[str, float | int]]:
    """Write ``out_dir/model.onnx`` and ``model.int8.onnx`` for ``model``; return the
    temperature fitted on the dev ``batches`` (torch logits) and the parity record."""
    model.eval()
    with torch.no_grad():
        reference = np.concatenate(
            [model(torch.from_numpy(i), torch.from_numpy(m)).numpy() for i, m in batches]
        )
    temperature = fit_temperature(reference, labels)
    export_onnx(model, out_dir / "model.onnx")
    quantize_int8(out_dir / "model.onnx", out_dir / "model.int8.onnx", keep_fp32=keep_fp32)
    fp32, int8_parity = compare_variants(out_dir, batches, labels, threads)
    parity = {"fp32_max_abs_diff_vs_torch": float(np.abs(fp32 - reference).max()), **int8_parity}
    return temperature, parity
