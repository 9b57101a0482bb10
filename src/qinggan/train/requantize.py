"""Re-make a trained run's int8 graph, leaving the MatMuls that move labels in fp32.

Dynamic int8 quantises each activation tensor with a single scale. When one layer's input
carries a few very large values, that scale leaves the rest of the tensor a handful of
levels, and that one layer can account for most of int8's disagreement with fp32.

    python -m qinggan.train.requantize RUN DATA_DIR --scan
        each layer kept in fp32 in turn, then each MatMul of the layer that helps most:
        mean |logit difference| to fp32 and label agreement on the run's dev subset
    python -m qinggan.train.requantize RUN DATA_DIR --keep-fp32 layers.4/fo/
        rewrite RUN/model.int8.onnx with those MatMuls in fp32 and update the manifest
        (parity, default variant, training.config.int8_keep_fp32)

RUN is a bundle written by ``qinggan train`` (it holds ``model.onnx``); the dev subset is
the one training used (same sources, size and seed). No torch needed at run time beyond
the ``train`` extra's ONNX tooling.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import load_bundle, rewrite_manifest
from ..errors import QingganError, run_main
from .batches import Batch, eval_batches, text_encoder
from .data import dev_subset, read_split
from .export import (
    compare_variants,
    default_variant,
    int8_difference,
    onnx_logits,
    quantize_int8,
    weight_matmuls,
)

LAYER = re.compile(r"layers\.(\d+)/([^/]+)/")


def dev_batches(run: Path, data_dir: Path) -> tuple[list[Batch], np.ndarray]:
    """The run's dev subset (as training drew it), tokenised and length-batched."""
    m = load_bundle(run).manifest
    config = m.training.get("config", {})
    if "dev_rows" not in config or "seed" not in config:
        raise QingganError(f"{run}: not a bundle written by qinggan train (no training config)")
    dev = dev_subset(
        read_split(data_dir, "dev", config.get("sources")), config["dev_rows"], config["seed"]
    )
    encoder = text_encoder(run / m.tokenizer, m.max_length)
    order, batches = eval_batches(encoder, encoder.encode([e.text for e in dev]))
    return batches, np.array([e.label for e in dev])[order]


def scan(run: Path, data_dir: Path, threads: int = 2) -> list[dict[str, Any]]:
    """int8 with nothing kept, with each layer kept in fp32, then each MatMul of the best layer."""
    batches, _ = dev_batches(run, data_dir)
    fp32 = onnx_logits(run / "model.onnx", batches, threads)
    names = weight_matmuls(run / "model.onnx")
    layers = sorted({int(m.group(1)) for n in names if (m := LAYER.search(n))})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "model.int8.onnx"

        def measure(keep: list[str]) -> dict[str, Any]:
            quantize_int8(run / "model.onnx", graph, keep_fp32=keep)
            diff = int8_difference(fp32, onnx_logits(graph, batches, threads))
            row = {
                "keep_fp32": keep,
                "mean_abs_diff": round(diff["int8_mean_abs_diff_vs_fp32"], 5),
                "agreement": round(diff["int8_label_agreement_vs_fp32"], 4),
            }
            print(json.dumps(row), flush=True)
            return row

        rows.append(measure([]))
        by_layer = [measure([f"layers.{i}/"]) for i in layers]
        rows += by_layer
        if by_layer:
            best = min(by_layer, key=lambda r: r["mean_abs_diff"])["keep_fp32"][0]
            ops = sorted({m.group(2) for n in names if best in n and (m := LAYER.search(n))})
            rows += [measure([f"{best}{op}/"]) for op in ops]
    return rows


def requantize(run: Path, data_dir: Path, keep_fp32: list[str], threads: int = 2) -> dict[str, Any]:
    """Rewrite ``run/model.int8.onnx`` keeping ``keep_fp32`` in fp32; returns the new parity."""
    bundle = load_bundle(run)
    m = bundle.manifest
    if "int8" not in m.models or "fp32" not in m.models:
        raise QingganError(f"{run}: needs both fp32 and int8 graphs (a qinggan train run)")
    batches, labels = dev_batches(run, data_dir)
    quantize_int8(run / m.models["fp32"], run / m.models["int8"], keep_fp32=keep_fp32)
    _, measured = compare_variants(run, batches, labels, threads)
    parity = {**m.parity, **measured}
    config = {**m.training.get("config", {}), "int8_keep_fp32": list(keep_fp32)}
    rewrite_manifest(
        run,
        parity=parity,
        default_variant=default_variant(parity),
        training={**m.training, "config": config},
    )
    return parity


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--scan", action="store_true", help="measure; change nothing")
    parser.add_argument("--keep-fp32", action="append", default=[], metavar="PATTERN")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.scan:
        scan(args.run, args.data_dir, args.threads)
        return
    parity = requantize(args.run, args.data_dir, args.keep_fp32, args.threads)
    print(json.dumps(parity, indent=2))


if __name__ == "__main__":
    run_main(main)
