"""Parity between the PyTorch checkpoint and the exported ONNX graphs.

The reference is the checkpoint as its own framework runs it: the source tokenizer
(the pure-Python WordPiece for ``vocab.txt`` checkpoints) and the PyTorch model. The
candidate is the bundle as qinggan serves it: ``tokenizer.json`` through
:class:`~qinggan.tokenization.TextEncoder`, padded batches, ONNX Runtime. So the check
covers tokenizer conversion, export, graph fusion and padding, end to end.

fp32 must match to ``FP32_TOLERANCE`` in max |logit difference|; int8 is judged by
label agreement with fp32 and the largest probability difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..build_options import FP32_TOLERANCE
from ..engine import create_session, default_threads, softmax
from ..tokenization import TextEncoder
from .checkpoints import Checkpoint

BATCH_SIZE = 16


@dataclass
class Int8Parity:
    label_agreement: float
    flips: int
    max_prob_diff: float
    mean_prob_diff: float
    min_agreement: float
    accepted: bool
    forced: bool = False
    preset: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ParityReport:
    texts: int
    truncated: int
    max_length: int
    token_mismatches: int
    fp32_max_abs_diff: float
    fp32_label_agreement: float
    tolerance: float
    first_token_mismatch: str = ""
    int8: Int8Parity | None = None

    @property
    def fp32_ok(self) -> bool:
        return self.fp32_max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp32_max_abs_diff"] = float(f"{self.fp32_max_abs_diff:.3g}")
        if self.int8 is not None:
            data["int8"]["max_prob_diff"] = round(self.int8.max_prob_diff, 6)
            data["int8"]["mean_prob_diff"] = round(self.int8.mean_prob_diff, 6)
        return data


def reference_logits(
    checkpoint: Checkpoint, texts: Sequence[str], max_length: int
) -> tuple[np.ndarray, list[list[int]]]:
    """Logits from the PyTorch model on the source tokenizer's ids (fp64 copy of fp32 output)."""
    encoded = checkpoint.reference_tokenizer(
        list(texts), truncation=True, max_length=max_length, add_special_tokens=True
    )["input_ids"]
    pad_id = checkpoint.tokenizer.pad_token_id or 0
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    logits = np.zeros((len(texts), len(checkpoint.source_labels)), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            width = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = 1
            kwargs = {"input_ids": ids, "attention_mask": mask}
            if checkpoint.uses_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(ids)
            logits[rows] = checkpoint.model(**kwargs).logits.double().numpy()
    return logits, [list(map(int, e)) for e in encoded]


def onnx_logits(
    model_path: Path, encoder: TextEncoder, texts: Sequence[str], input_names: Sequence[str]
) -> tuple[np.ndarray, list[list[int]], int]:
    """Logits from ONNX Runtime in input-order batches (mixed lengths, so padding is exercised)."""
    session = create_session(model_path, default_threads())
    encoded = encoder.encode(texts)
    out = []
    for start in range(0, len(encoded), BATCH_SIZE):
        ids, mask = encoder.pad(encoded[start : start + BATCH_SIZE])
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out.append(session.run(["logits"], {k: feeds[k] for k in input_names})[0])
    truncated = sum(e.truncated for e in encoded)
    return np.concatenate(out).astype(np.float64), [e.ids for e in encoded], truncated


def compare_fp32(
    reference: np.ndarray,
    reference_ids: list[list[int]],
    candidate: np.ndarray,
    candidate_ids: list[list[int]],
    texts: Sequence[str],
    *,
    truncated: int,
    max_length: int,
    tolerance: float = FP32_TOLERANCE,
) -> ParityReport:
    mismatched = [
        i for i, (a, b) in enumerate(zip(reference_ids, candidate_ids, strict=True)) if a != b
    ]
    first = ""
    if mismatched:
        i = mismatched[0]
        first = (
            f"text #{i} {texts[i][:30]!r}: source ids {reference_ids[i][:12]} "
            f"vs bundle ids {candidate_ids[i][:12]}"
        )
    return ParityReport(
        texts=len(texts),
        truncated=truncated,
        max_length=max_length,
        token_mismatches=len(mismatched),
        fp32_max_abs_diff=float(np.abs(reference - candidate).max()),
        fp32_label_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()),
        tolerance=tolerance,
        first_token_mismatch=first,
    )


def compare_int8(
    fp32: np.ndarray, int8: np.ndarray, *, min_agreement: float, force: bool
) -> Int8Parity:
    agree = fp32.argmax(1) == int8.argmax(1)
    prob_diff = np.abs(softmax(fp32) - softmax(int8)).max(axis=1)
    agreement = float(agree.mean())
    return Int8Parity(
        label_agreement=agreement,
        flips=int((~agree).sum()),
        max_prob_diff=float(prob_diff.max()),
        mean_prob_diff=float(prob_diff.mean()),
        min_agreement=min_agreement,
        accepted=agreement >= min_agreement,
        forced=force and agreement < min_agreement,
    )


def parity_table(report: ParityReport) -> Any:
    """A rich table of the report, one row per check."""
    from rich.table import Table

    def verdict(ok: bool) -> str:
        return "[green]pass[/green]" if ok else "[bold red]FAIL[/bold red]"

    table = Table(
        title=f"parity on {report.texts} texts "
        f"({report.truncated} truncated at {report.max_length} tokens)"
    )
    for column in ("check", "value", "limit", "result"):
        table.add_column(column)
    table.add_row(
        "tokenizer: texts with different ids",
        str(report.token_mismatches),
        "0",
        verdict(report.token_mismatches == 0),
    )
    table.add_row(
        "fp32: max |logit diff| vs PyTorch",
        f"{report.fp32_max_abs_diff:.2e}",
        f"<= {report.tolerance:.0e}",
        verdict(report.fp32_ok),
    )
    table.add_row("fp32: label agreement", f"{report.fp32_label_agreement:.2%}", "", "")
    if report.int8 is not None:
        q = report.int8
        table.add_row(
            "int8: label agreement with fp32",
            f"{q.label_agreement:.2%} ({q.flips} flips)",
            f">= {q.min_agreement:.0%}",
            verdict(q.accepted) + (" (forced)" if q.forced else ""),
        )
        table.add_row("int8: quantisation preset", q.preset, "", "")
        table.add_row("int8: max |probability diff|", f"{q.max_prob_diff:.4f}", "", "")
        table.add_row("int8: mean |probability diff|", f"{q.mean_prob_diff:.4f}", "", "")
    return table
