"""``convert_checkpoint``: checkpoint directory -> verified qinggan bundle.

Steps: load the checkpoint, write ``tokenizer.json``, export and fuse ``model.onnx``,
check fp32 parity (fail if it exceeds the tolerance), quantise ``model.int8.onnx`` and
check its label agreement (refuse it below the threshold unless forced), then write the
manifest. Everything happens in a temporary directory next to ``out`` that is renamed
into place only at the end, so a failed conversion leaves no bundle behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..bundle import Bundle, load_bundle, sha256_file, write_bundle
from ..errors import QingganError
from ..tokenization import TextEncoder
from .checkpoints import Checkpoint, load_checkpoint
from .export import export_onnx, fuse_transformer, op_counts
from .labels import map_labels
from .parity import (
    FP32_TOLERANCE,
    INT8_MIN_AGREEMENT,
    Int8Parity,
    ParityReport,
    compare_fp32,
    compare_int8,
    onnx_logits,
    reference_logits,
)
from .quantize import INT8_PRESETS, Int8Preset, quantize_int8
from .texts import BUILTIN_TEXTS

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


class ParityError(QingganError):
    """The exported fp32 graph does not reproduce the PyTorch model."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Conversion:
    """What :func:`convert_checkpoint` produced."""

    bundle: Bundle
    report: ParityReport
    int8_refused: bool


def _quiet(_: str) -> None:
    pass


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    layout: str = "auto",
    name: str | None = None,
    max_length: int | None = None,
    int8: bool = True,
    force_int8: bool = False,
    min_int8_agreement: float = INT8_MIN_AGREEMENT,
    int8_weights: str = "u8",
    reduce_range: bool = False,
    int8_search: bool = True,
    labels: Sequence[str] | None = None,
    parity_texts: Sequence[str] = (),
    fuse: bool = True,
    overwrite: bool = False,
    tolerance: float = FP32_TOLERANCE,
    log: Callable[[str], None] = _quiet,
) -> Conversion:
    """Convert the checkpoint at ``src`` into a bundle at ``out`` and verify it.

    int8 starts with ``int8_weights``/``reduce_range`` (per-channel); if that misses
    ``min_int8_agreement`` and ``int8_search`` is on, the other presets in
    :data:`~qinggan.convert.quantize.INT8_PRESETS` are tried and the first that passes
    (else the best) is used; every attempt is recorded in the parity report.
    ``parity_texts`` are checked in addition to the built-in texts. Raises
    :class:`ParityError` (leaving nothing at ``out``) when fp32 logits differ from
    PyTorch's by more than ``tolerance``.
    """
    out = Path(out).expanduser()
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise QingganError(f"{out} already exists; pass --overwrite to replace it")
    checkpoint = load_checkpoint(src, layout)
    label_map = map_labels(checkpoint.source_labels, labels)
    length = _resolve_max_length(checkpoint, max_length)
    log(
        f"loaded {checkpoint.layout} checkpoint {checkpoint.path}: "
        f"{checkpoint.info['num_layers']} layers, hidden "
        f"{checkpoint.hidden_size}, labels {list(checkpoint.source_labels)} -> "
        f"{list(label_map.labels)}, max_length {length}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.converting-", dir=out.parent))
    try:
        conversion = _convert_into(
            work,
            checkpoint,
            label_map,
            length,
            name or out.name,
            int8=int8,
            force_int8=force_int8,
            min_int8_agreement=min_int8_agreement,
            int8_weights=int8_weights,
            reduce_range=reduce_range,
            int8_search=int8_search,
            texts=[*BUILTIN_TEXTS, *parity_texts],
            fuse=fuse,
            tolerance=tolerance,
            log=log,
        )
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Conversion(load_bundle(out), conversion.report, conversion.int8_refused)


def _resolve_max_length(checkpoint: Checkpoint, requested: int | None) -> int:
    if requested is None:
        return checkpoint.default_max_length
    if not 2 <= requested <= checkpoint.max_positions:
        raise QingganError(
            f"--max-length must be between 2 and the model's {checkpoint.max_positions} "
            f"positions, got {requested}"
        )
    return requested


def _convert_into(
    work: Path,
    checkpoint: Checkpoint,
    label_map: Any,
    max_length: int,
    name: str,
    *,
    int8: bool,
    force_int8: bool,
    min_int8_agreement: float,
    int8_weights: str,
    reduce_range: bool,
    int8_search: bool,
    texts: list[str],
    fuse: bool,
    tolerance: float,
    log: Callable[[str], None],
) -> Conversion:
    checkpoint.tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
    encoder = TextEncoder(work / "tokenizer.json", max_length)

    log("exporting ONNX")
    raw = work / "raw.onnx"
    exported = export_onnx(checkpoint.model, raw, uses_token_types=checkpoint.uses_token_types)
    fused: dict[str, int] = {}
    if fuse:
        log("fusing attention/layer-norm/gelu for ONNX Runtime")
        fused = fuse_transformer(
            raw,
            work / FP32_FILE,
            num_heads=checkpoint.num_heads,
            hidden_size=checkpoint.hidden_size,
        )
        raw.unlink()
    else:
        raw.rename(work / FP32_FILE)

    log(f"checking fp32 parity on {len(texts)} texts")
    ref, ref_ids = reference_logits(checkpoint, texts, max_length)
    fp32, fp32_ids, truncated = onnx_logits(work / FP32_FILE, encoder, texts, exported["inputs"])
    report = compare_fp32(
        ref,
        ref_ids,
        fp32,
        fp32_ids,
        texts,
        truncated=truncated,
        max_length=max_length,
        tolerance=tolerance,
    )
    if not report.fp32_ok:
        hint = ""
        if report.token_mismatches:
            hint = (
                f"; {report.token_mismatches} text(s) tokenise differently, e.g. "
                f"{report.first_token_mismatch}"
            )
        raise ParityError(
            f"fp32 ONNX logits differ from PyTorch by {report.fp32_max_abs_diff:.2e} "
            f"(tolerance {tolerance:.0e}){hint}; no bundle written",
            report,
        )

    models = {"fp32": FP32_FILE}
    default_variant = "fp32"
    refused = False
    quant_settings: dict[str, Any] = {}
    attempts: list[dict[str, Any]] = []
    best: tuple[Int8Preset, Int8Parity, dict[str, Any]] | None = None
    if int8:
        first = Int8Preset(int8_weights, per_channel=True, reduce_range=reduce_range)
        presets = [first] + ([p for p in INT8_PRESETS if p != first] if int8_search else [])
        for preset in presets:
            log(f"quantising int8 ({preset.name})")
            quant_settings = quantize_int8(
                work / FP32_FILE, work / INT8_FILE, weight_type=preset.weights,
                per_channel=preset.per_channel, reduce_range=preset.reduce_range,
            )  # fmt: skip
            q, _, _ = onnx_logits(work / INT8_FILE, encoder, texts, exported["inputs"])
            result = compare_int8(fp32, q, min_agreement=min_int8_agreement, force=force_int8)
            attempts.append({"preset": preset.name, "label_agreement": result.label_agreement,
                             "max_prob_diff": round(result.max_prob_diff, 6)})  # fmt: skip
            log(f"int8 {preset.name}: {result.label_agreement:.2%} label agreement with fp32")
            if best is None or result.label_agreement > best[1].label_agreement:
                best = (preset, result, quant_settings)
                (work / INT8_FILE).replace(work / "best.int8.onnx")
            if result.accepted:
                break
        assert best is not None
        (work / "best.int8.onnx").replace(work / INT8_FILE)
        _, report.int8, quant_settings = best
        report.int8.attempts = attempts
        report.int8.preset = best[0].name
        if report.int8.accepted:
            models["int8"] = INT8_FILE
            default_variant = "int8"
        else:
            refused = not force_int8
            if force_int8:
                models["int8"] = INT8_FILE
            else:
                (work / INT8_FILE).unlink()

    source = {
        "kind": "qinggan convert",
        "layout": checkpoint.layout,
        "path": str(checkpoint.path.resolve()),
        "weights": checkpoint.weights_file,
        "weights_sha256": _weights_digest(checkpoint),
        **checkpoint.info,
        "source_labels": list(label_map.source_labels),
        **({"label_assumption": label_map.assumption} if label_map.assumption else {}),
        **exported,
        "fused_ops": fused,
        "fp32_ops": sum(op_counts(work / FP32_FILE).values()),
        **({"int8": {**quant_settings, "kept": "int8" in models}} if int8 else {}),
        "versions": {pkg: version(pkg) for pkg in ("torch", "transformers", "onnx", "onnxruntime")},
    }
    bundle = write_bundle(
        work,
        name=name,
        labels=list(label_map.labels),
        display_labels=list(label_map.display_labels),
        models=models,
        max_length=max_length,
        inputs=tuple(exported["inputs"]),
        default_variant=default_variant,
        source=source,
        parity=report.to_dict(),
    )
    return Conversion(bundle, report, refused)


def _weights_digest(checkpoint: Checkpoint) -> str:
    path = checkpoint.path / checkpoint.weights_file
    return sha256_file(path) if path.suffix in (".bin", ".safetensors") else ""
