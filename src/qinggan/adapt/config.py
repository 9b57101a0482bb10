"""The options of ``qinggan adapt``, declared once (the CLI reads help texts from here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(frozen=True)
class AdaptOptions:
    """What one adapt run reads, writes and may spend."""

    data: str = option(help="Labelled texts: CSV, TSV, JSON Lines or Parquet (.gz ok).")
    out: str = option(help="Directory to write the adapted bundle into.", env=False)
    base: str = option("accurate", help="The model to adapt: a built-in name or a bundle.")
    minutes: float = option(
        10.0, help="Time budget; optional steps (the ChnSentiCorp check) stop when it is spent."
    )
    seed: int = option(13, help="Seed of the validation split, the replay sample and the fits.")
    val_fraction: float = option(
        0.2, help="Share of every label held out to choose the method and calibrate."
    )
    text_column: str | None = option(None, help="Text column (default: text, review, ...).")
    label_column: str | None = option(None, help="Label column (default: label, sentiment...).")
    labels: tuple[str, ...] | None = option(
        None, help="Label names in output order, e.g. bad,ok,good (default: sentiment labels)."
    )
    data_dir: str | None = option(
        None,
        help="The built-ins' training data (../shared/data): replayed so the general model "
        "is not forgotten, and ChnSentiCorp test for the before/after table.",
    )
    overwrite: bool = option(False, help="Replace OUT if it exists.")
    name: str | None = option(None, help="Bundle name (default: OUT's directory name).")
    threads: int | None = option(None, help="ONNX Runtime threads (default: all cores).")
    head_replay_rows: int = option(2000, help="Replayed review rows for the new head.")
    ngram_replay_rows: int = option(5000, help="Replayed review rows for the n-gram model.")
    guard_rows: int = option(600, help="Review dev rows that guard against forgetting.")
