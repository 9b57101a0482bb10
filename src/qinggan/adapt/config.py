"""The options of ``qinggan adapt``, declared once: the CLI builds its flags, help texts,
defaults and limits from these fields (``cli.app.dataclass_options``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import below_min, option, same_as
from ..settings import LoadOptions
from .errors import AdaptError


@dataclass(frozen=True)
class AdaptOptions:
    """What one adapt run reads, writes and may spend."""

    data: str = option(
        help="Labelled texts: CSV, TSV, JSON Lines or Parquet (.gz ok), or a corrections store "
        "(a SQLite file or postgresql:// URL, as given to serve --feedback-db)."
    )
    out: str = option(help="Directory to write the adapted bundle into.", short="-o", env=False)
    base: str = option("accurate", help="The model to adapt: a built-in name or a bundle.")
    minutes: float = option(
        10.0,
        help="Time budget; optional steps (the ChnSentiCorp check) stop when it is spent.",
        min=0.1,
    )
    seed: int = option(13, help="Seed of the validation split, the replay sample and the fits.")
    val_fraction: float = option(
        0.2, help="Share of every label held out to choose the method and calibrate (< 1).",
        min=0.01,
    )  # fmt: skip
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
    threads: int | None = same_as(LoadOptions, "threads")
    head_replay_rows: int = option(2000, help="Replayed review rows for the new head.", min=0)
    ngram_replay_rows: int = option(5000, help="Replayed review rows for the n-grams.", min=0)
    guard_rows: int = option(2000, help="Review dev rows that guard against forgetting.", min=0)

    def __post_init__(self) -> None:
        problems = below_min(self)
        if not self.val_fraction < 1:
            problems.append(f"val_fraction must be below 1, got {self.val_fraction}")
        if problems:
            raise AdaptError("; ".join(problems))

    @staticmethod
    def split_labels(value: str | tuple[str, ...] | None) -> tuple[str, ...] | None:
        """``--labels a,b,c`` as a tuple of names."""
        if value is None or isinstance(value, tuple):
            return value
        return tuple(x.strip() for x in value.split(",") if x.strip()) or None
