"""The plan of a scoring run: its options, what to read, what to add, where to resume.

Planning reads the checkpoint left by an interrupted run for the same output and decides
between three cases: start a new output (clearing what an older run left), continue
after the checkpoint's rows, or nothing to do (the run finished and was killed between
renaming its output into place and removing the checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..options import option
from ..settings import checkpoint_seconds
from .checkpoints import (
    ResumeError,
    checkpoint_path,
    clear_run_files,
    describe_mismatch,
    fingerprint,
    load_checkpoint,
)
from .formats import FORMATS, STDIO, FileFormatError, output_format
from .predictions import ChunkScorer, prediction_schema
from .readers import DEFAULT_CHUNK_SIZE, Source


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """How to read, score and checkpoint a file."""

    text_column: str = option("text", "Column (or JSON field) holding the text.", env=False)
    input_format: str = option(
        "auto",
        "Input format: auto, csv, tsv, jsonl, parquet, txt.",
        choices=("auto", *FORMATS),
        flag="--format",
        env=False,
    )
    chunk_size: int = option(
        DEFAULT_CHUNK_SIZE, "Rows read, scored and saved at a time.", env=False
    )
    prefix: str = option("", "Prefix for the added columns (e.g. pred_).", env=False)
    fail_long: bool = option(False, "Fail on texts longer than the model's token limit.", env=False)
    resume: bool | None = option(  # None: resume if possible; True: must; False: start over
        None,
        "Continue an interrupted run (default: when its checkpoint matches); "
        "--no-resume starts over.",
        env=False,
    )
    progress: bool = option(True, "Show a progress bar on a terminal.", env=False)
    checkpoint_seconds: float = option(
        help="Seconds between checkpoints (0: after every chunk).",
        default_factory=checkpoint_seconds,
    )
    extra: dict[str, Any] = field(default_factory=dict)  # more fingerprint entries


@dataclass(frozen=True)
class Plan:
    """One run's decisions, made before the first row is read."""

    input_path: str
    output_path: str
    output_format: str
    pred_schema: pa.Schema
    fingerprint: dict[str, Any] | None = None  # None: stdin or stdout, no checkpoints
    saved: dict[str, Any] | None = None  # the checkpoint this run continues from
    complete: bool = False  # the output is already complete: nothing to do

    @property
    def skip(self) -> int:
        """Input rows already in the output."""
        return int(self.saved["rows"]) if self.saved is not None else 0

    @property
    def sink_state(self) -> dict[str, Any] | None:
        """The sink state to continue from (``None``: a new output)."""
        if self.saved is None or not self.skip:
            return None
        state: dict[str, Any] = self.saved.get("sink", {})
        return state


def make_plan(
    source: Source, input_path: str, output_path: str, scorer: ChunkScorer, options: ScoreOptions
) -> Plan:
    """Plan a run of ``scorer`` over ``source`` into ``output_path``."""
    out_fmt = output_format(output_path)
    pred_schema = prediction_schema(scorer.labels, options.prefix)
    check_collisions(source.columns, pred_schema)
    plan = Plan(input_path, output_path, out_fmt, pred_schema)
    if STDIO in (input_path, output_path):
        return plan
    current = fingerprint(  # everything that changes the output
        input_path,
        {
            "text_column": options.text_column,
            "input_format": options.input_format,
            "output_format": out_fmt,
            "prefix": options.prefix,
            "fail_long": options.fail_long,
            **scorer.identity(),
            **options.extra,
        },
    )
    saved, complete = _resume_point(output_path, current, options.resume)
    return replace(plan, fingerprint=current, saved=saved, complete=complete)


def _resume_point(
    output_path: str, current: dict[str, Any], resume: bool | None
) -> tuple[dict[str, Any] | None, bool]:
    """The checkpoint to continue from and whether the output is already complete;
    clears the files of a run that will not be continued."""
    output = Path(output_path)
    saved = None if resume is False else load_checkpoint(output)
    if resume is False:
        clear_run_files(output)
    if saved is not None and saved.get("finished") and output.is_file():
        # Killed between renaming the finished output into place and removing the
        # checkpoint: the output is complete. The same run has nothing left to do.
        clear_run_files(output)
        if saved.get("fingerprint") == current:
            return saved, True
        saved = None
    if resume and saved is None:
        raise ResumeError(
            f"nothing to resume: no checkpoint {checkpoint_path(output)} "
            "(run without --resume to start)"
        )
    if saved is None:
        clear_run_files(output)
        return None, False
    if saved.get("fingerprint") != current:
        reason = describe_mismatch(saved["fingerprint"], current)
        raise ResumeError(
            f"cannot resume {output_path}: {reason}. Run the original command again, "
            "or pass --no-resume to start over."
        )
    return saved, False


def check_collisions(columns: Sequence[str], pred_schema: pa.Schema) -> None:
    """The added columns must not overwrite input columns."""
    clash = [c for c in pred_schema.names if c in columns]
    if clash:
        raise FileFormatError(
            f"the input already has column(s) {', '.join(clash)}, which the output adds; "
            "pass --prefix (e.g. --prefix pred_) to name the new columns differently"
        )
