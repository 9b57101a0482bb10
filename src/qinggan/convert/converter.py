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
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..build_options import ConvertOptions
from ..bundle import Bundle, load_bundle, sha256_file, write_bundle
from ..errors import QingganError
from ..onnx_tools import INT8_PRESETS, Int8Preset, op_counts, quantize_int8
from ..tokenization import TextEncoder
from .checkpoints import Checkpoint, load_checkpoint
from .export import export_onnx, fuse_transformer
from .labels import LabelMap, map_labels
from .parity import (
    Int8Parity,
    ParityReport,
    compare_fp32,
    compare_int8,
    onnx_logits,
    reference_logits,
)
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
    options: ConvertOptions | None = None,
    *,
    log: Callable[[str], None] = _quiet,
    **overrides: Any,
) -> Conversion:
    """Convert the checkpoint at ``src`` into a bundle at ``out`` and verify it.

    ``options`` (a :class:`~qinggan.build_options.ConvertOptions`; keyword ``overrides``
    replace its fields) say how. int8 starts with ``int8_weights``/``reduce_range``
    (per-channel); if that misses ``min_int8_agreement`` and ``int8_search`` is on, the
    other presets in :data:`~qinggan.onnx_tools.INT8_PRESETS` are tried and the first
    that passes (else the best) is used; every attempt is recorded in the parity report.
    ``parity_texts`` are checked in addition to the built-in texts. Raises
    :class:`ParityError` (leaving nothing at ``out``) when fp32 logits differ from
    PyTorch's by more than ``tolerance``.
    """
    opts = replace(options or ConvertOptions(), **overrides)
    out = Path(out).expanduser()
    if out.exists() and not opts.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise QingganError(f"{out} already exists; pass --overwrite to replace it")
    checkpoint = load_checkpoint(src, opts.layout)
    label_map = map_labels(checkpoint.source_labels, opts.labels)
    length = _resolve_max_length(checkpoint, opts.max_length)
    log(
        f"loaded {checkpoint.layout} checkpoint {checkpoint.path}: "
        f"{checkpoint.info['num_layers']} layers, hidden "
        f"{checkpoint.hidden_size}, labels {list(checkpoint.source_labels)} -> "
        f"{list(label_map.labels)}, max_length {length}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.converting-", dir=out.parent))
    try:
        target = _Target(work, checkpoint, label_map, length, opts.name or out.name)
        conversion = _convert_into(target, opts, log)
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


@dataclass(frozen=True)
class _Target:
    """One conversion's inputs once resolved: where, from what, labels, length, name."""

    work: Path
    checkpoint: Checkpoint
    label_map: LabelMap
    max_length: int
    name: str


def _convert_into(target: _Target, opts: ConvertOptions, log: Callable[[str], None]) -> Conversion:
    """Export, check fp32, search int8, write the manifest, all inside ``target.work``."""
    work, checkpoint = target.work, target.checkpoint
    checkpoint.tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
    encoder = TextEncoder(work / "tokenizer.json", target.max_length)
    texts = [*BUILTIN_TEXTS, *opts.parity_texts]
    exported, fused = _export_fp32(work, checkpoint, opts.fuse, log)
    report, fp32 = _check_fp32(target, encoder, texts, exported["inputs"], opts.tolerance, log)

    models = {"fp32": FP32_FILE}
    default_variant = "fp32"
    refused = False
    quant_settings: dict[str, Any] = {}
    if opts.int8:
        report.int8, quant_settings = _search_int8(
            work, encoder, texts, exported["inputs"], fp32, opts, log
        )
        if report.int8.accepted:
            models["int8"] = INT8_FILE
            default_variant = "int8"
        else:
            refused = not opts.force_int8
            if opts.force_int8:
                models["int8"] = INT8_FILE
            else:
                (work / INT8_FILE).unlink()
    source = _provenance(target, exported, fused, quant_settings if opts.int8 else None, models)
    bundle = write_bundle(
        work,
        name=target.name,
        labels=list(target.label_map.labels),
        display_labels=list(target.label_map.display_labels),
        models=models,
        max_length=target.max_length,
        inputs=tuple(exported["inputs"]),
        default_variant=default_variant,
        source=source,
        parity=report.to_dict(),
    )
    return Conversion(bundle, report, refused)


def _export_fp32(
    work: Path, checkpoint: Checkpoint, fuse: bool, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Write ``work/model.onnx`` (fused unless ``fuse`` is off); returns how, and the fusions."""
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
    return exported, fused


def _check_fp32(
    target: _Target,
    encoder: TextEncoder,
    texts: list[str],
    inputs: list[str],
    tolerance: float,
    log: Callable[[str], None],
) -> tuple[ParityReport, Any]:
    """fp32 ONNX logits against PyTorch's; raises :class:`ParityError` past ``tolerance``."""
    log(f"checking fp32 parity on {len(texts)} texts")
    ref, ref_ids = reference_logits(target.checkpoint, texts, target.max_length)
    fp32, fp32_ids, truncated = onnx_logits(target.work / FP32_FILE, encoder, texts, inputs)
    report = compare_fp32(
        ref,
        ref_ids,
        fp32,
        fp32_ids,
        texts,
        truncated=truncated,
        max_length=target.max_length,
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
    return report, fp32


def _search_int8(
    work: Path,
    encoder: TextEncoder,
    texts: list[str],
    inputs: list[str],
    fp32: Any,
    opts: ConvertOptions,
    log: Callable[[str], None],
) -> tuple[Int8Parity, dict[str, Any]]:
    """Quantise with the requested preset, then (with ``int8_search``) the others until one
    passes the agreement gate; leaves the best graph at ``work/model.int8.onnx``."""
    first = Int8Preset(opts.int8_weights, per_channel=True, reduce_range=opts.reduce_range)
    presets = [first] + ([p for p in INT8_PRESETS if p != first] if opts.int8_search else [])
    attempts: list[dict[str, Any]] = []
    best: tuple[Int8Preset, Int8Parity, dict[str, Any]] | None = None
    for preset in presets:
        log(f"quantising int8 ({preset.name})")
        settings = quantize_int8(work / FP32_FILE, work / INT8_FILE, preset)
        q, _, _ = onnx_logits(work / INT8_FILE, encoder, texts, inputs)
        result = compare_int8(fp32, q, min_agreement=opts.min_int8_agreement, force=opts.force_int8)
        attempts.append({"preset": preset.name, "label_agreement": result.label_agreement,
                         "max_prob_diff": round(result.max_prob_diff, 6)})  # fmt: skip
        log(f"int8 {preset.name}: {result.label_agreement:.2%} label agreement with fp32")
        if best is None or result.label_agreement > best[1].label_agreement:
            best = (preset, result, settings)
            (work / INT8_FILE).replace(work / "best.int8.onnx")
        if result.accepted:
            break
    assert best is not None
    (work / "best.int8.onnx").replace(work / INT8_FILE)
    preset, parity, settings = best
    parity.attempts = attempts
    parity.preset = preset.name
    return parity, settings


def _provenance(
    target: _Target,
    exported: dict[str, Any],
    fused: dict[str, int],
    quant_settings: dict[str, Any] | None,
    models: dict[str, str],
) -> dict[str, Any]:
    """The manifest's ``source``: checkpoint, weights digest, export, fusions, int8, versions."""
    checkpoint, label_map = target.checkpoint, target.label_map
    int8 = None if quant_settings is None else {**quant_settings, "kept": "int8" in models}
    return {
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
        "fp32_ops": sum(op_counts(target.work / FP32_FILE).values()),
        **({"int8": int8} if int8 is not None else {}),
        "versions": {pkg: version(pkg) for pkg in ("torch", "transformers", "onnx", "onnxruntime")},
    }


def _weights_digest(checkpoint: Checkpoint) -> str:
    path = checkpoint.path / checkpoint.weights_file
    return sha256_file(path) if path.suffix in (".bin", ".safetensors") else ""
