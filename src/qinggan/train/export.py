"""ONNX export (fp32), int8 (through :mod:`qinggan.onnx_tools`), and the parity/agreement
checks of a trained model."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..build_options import INT8_MIN_AGREEMENT
from ..onnx_tools import TRAIN_INT8, weight_matmuls
from ..onnx_tools import quantize_int8 as quantize_dynamic_int8
from .calibration import fit_temperature
from .model import SentimentModel

__all__ = [
    "INT8_MIN_AGREEMENT",
    "compare_variants",
    "default_variant",
    "export_checked",
    "export_onnx",
    "int8_difference",
    "onnx_logits",
    "quantize_int8",
    "weight_matmuls",
]

OPSET = 17


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


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    *,
    embeddings: bool = True,
    keep_fp32: Sequence[str] = (),
) -> list[str]:
    """The trainer's int8 graph (:data:`~qinggan.onnx_tools.TRAIN_INT8`, the one policy in
    :mod:`qinggan.onnx_tools`) of the MatMul weights and, with ``embeddings``, the embedding
    Gather; MatMuls named by ``keep_fp32`` stay fp32. Returns the names kept in fp32."""
    preset = replace(TRAIN_INT8, embeddings=embeddings)
    settings = quantize_dynamic_int8(
        fp32_path, int8_path, preset, ops=("MatMul",), keep_fp32=keep_fp32
    )
    return list(settings.get("kept_fp32", []))


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
