"""One scoring run: read chunks, score them, write and checkpoint, rename at the end."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import QingganError
from .checkpoints import (
    CHECKPOINT_VERSION,
    ResumeError,
    checkpoint_path,
    clear_run_files,
    describe_mismatch,
    fingerprint,
    load_checkpoint,
    partial_path,
    write_json_atomic,
)
from .formats import STDIO, FileFormatError, output_format
from .predictions import ChunkScorer, prediction_schema
from .readers import DEFAULT_CHUNK_SIZE, Chunk, LineSource, Source, open_source
from .writers import AppendSink, ParquetSink, Sink, StdoutSink

CHECKPOINT_EVERY_S = 1.0  # override with $QINGGAN_CHECKPOINT_SECONDS (0 = every chunk)
CHECKPOINT_ENV = "QINGGAN_CHECKPOINT_SECONDS"


@dataclass
class Summary:
    """What a run did."""

    rows: int = 0
    errors: int = 0
    truncated: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    output: str = ""

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        resumed = f", resumed after row {self.resumed_from:,}" if self.resumed_from else ""
        return (
            f"{self.rows:,} rows, {self.errors:,} errors, {self.truncated:,} truncated in "
            f"{self.seconds:.1f}s ({self.rows_per_second:,.0f} rows/s){resumed} -> {self.output}"
        )


@dataclass
class ScoreOptions:
    """How to read and score a file."""

    text_column: str = "text"
    input_format: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    prefix: str = ""
    fail_long: bool = False
    resume: bool | None = None  # None: resume if possible; True: must resume; False: start over
    progress: bool = True
    checkpoint_seconds: float = field(default_factory=lambda: _env_seconds(CHECKPOINT_ENV))
    extra: dict[str, Any] = field(default_factory=dict)


def _env_seconds(name: str) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else CHECKPOINT_EVERY_S
    except ValueError:
        raise QingganError(f"${name} must be a number of seconds, got {raw!r}") from None


def _check_collisions(columns: Sequence[str], pred_schema: pa.Schema) -> None:
    clash = [c for c in pred_schema.names if c in columns]
    if clash:
        raise FileFormatError(
            f"the input already has column(s) {', '.join(clash)}, which the output adds; "
            "pass --prefix (e.g. --prefix pred_) to name the new columns differently"
        )


def score_file(
    input_path: str,
    output_path: str,
    scorer: ChunkScorer,
    options: ScoreOptions | None = None,
    *,
    on_progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Score every row of ``input_path`` into ``output_path`` (``-`` for stdin/stdout).

    Resumes an interrupted run for the same output when its checkpoint matches (see the
    module docstring). Returns a :class:`Summary`.
    """
    options = options or ScoreOptions()
    if options.chunk_size < 1:
        raise QingganError("--chunk-size must be at least 1")
    output_format(output_path)  # fail early on an unknown extension
    to_stdout = output_path == STDIO
    output = Path(output_path)
    if not to_stdout and input_path != STDIO:
        if os.path.abspath(input_path) == os.path.abspath(output_path):
            raise QingganError("the output must not be the input file")
    if not to_stdout and not output.parent.is_dir():
        raise FileFormatError(f"output directory {str(output.parent)!r} does not exist")
    if options.resume and (to_stdout or input_path == STDIO):
        raise ResumeError("--resume needs an input file and an output file, not stdin/stdout")

    source = open_source(input_path, options.text_column, options.input_format)
    try:
        return _run(source, input_path, output_path, scorer, options, on_progress)
    finally:
        source.close()


def _run(
    source: Source,
    input_path: str,
    output_path: str,
    scorer: ChunkScorer,
    options: ScoreOptions,
    on_progress: Callable[[Summary], None] | None,
) -> Summary:
    out_fmt = output_format(output_path)
    to_stdout = output_path == STDIO
    output = Path(output_path)
    pred_schema = prediction_schema(scorer.labels, options.prefix, scorer.explain)
    _check_collisions(source.columns, pred_schema)

    checkpointing = not to_stdout and input_path != STDIO
    skip = 0
    summary = Summary(output=output_path)
    sink_state: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    if checkpointing:
        current = fingerprint(
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
        saved = None if options.resume is False else load_checkpoint(output)
        if options.resume is False:
            clear_run_files(output)
        if saved is not None and saved.get("finished") and output.is_file():
            # Killed between renaming the finished output into place and removing the
            # checkpoint: the output is complete. The same run has nothing left to do.
            clear_run_files(output)
            if saved.get("fingerprint") == current:
                _restore_counts(summary, saved)
                return summary
            saved = None
        if options.resume and saved is None:
            raise ResumeError(
                f"nothing to resume: no checkpoint {checkpoint_path(output)} "
                "(run without --resume to start)"
            )
        if saved is not None:
            if saved.get("fingerprint") != current:
                reason = describe_mismatch(saved["fingerprint"], current)
                raise ResumeError(
                    f"cannot resume {output_path}: {reason}. Run the original command again, "
                    "or pass --no-resume to start over."
                )
            skip = _restore_counts(summary, saved)
            sink_state = saved.get("sink", {})
        elif not options.resume:
            clear_run_files(output)

    sink: Sink
    if to_stdout:
        sink = StdoutSink()
    elif out_fmt == "parquet":
        sink = ParquetSink(output, resume_parts=sink_state.get("parts") if skip else None)
    else:
        if skip and not partial_path(output).is_file():
            raise ResumeError(f"cannot resume: {partial_path(output)} is missing; pass --no-resume")
        sink = AppendSink(output, out_fmt, resume_bytes=sink_state.get("bytes") if skip else None)

    from ..progress import RowProgress

    started = time.perf_counter()
    last_checkpoint = started
    label = Path(input_path).name if input_path != STDIO else "stdin"
    error_index = pred_schema.get_field_index(f"{options.prefix}error")
    truncated_index = pred_schema.get_field_index(f"{options.prefix}truncated")

    def save_checkpoint(*, finished: bool = False) -> None:
        state = sink.sync()
        if checkpointing:
            write_json_atomic(
                checkpoint_path(output),
                {
                    "version": CHECKPOINT_VERSION,
                    "fingerprint": current,
                    "rows": summary.rows,
                    "errors": summary.errors,
                    "truncated": summary.truncated,
                    "sink": state,
                    "finished": finished,  # the input is exhausted: only the rename is left
                },
            )

    chunks_read: deque[Chunk] = deque()
    growing = isinstance(source, LineSource) and source.growing
    frozen_columns: list[str] = []

    def texts_of(chunks: Iterator[Chunk]) -> Iterator[list[object]]:
        # Scorers may read ahead (Ray keeps several chunks in flight): remember them in order.
        for chunk in chunks:
            if growing:  # stdin JSON Lines: fields are discovered as rows arrive
                _check_collisions(source.columns, pred_schema)
                if out_fmt != "jsonl":
                    frozen_columns[:] = frozen_columns or list(source.columns)
                    _check_frozen_columns(frozen_columns, source.columns)
            chunks_read.append(chunk)
            yield chunk.texts

    try:
        show = options.progress and sys.stderr.isatty()
        with RowProgress(label, source.count_rows() if show else None, enabled=show) as bar:
            chunks = texts_of(source.chunks(options.chunk_size, skip))
            for preds in scorer.map(chunks, prefix=options.prefix, fail_long=options.fail_long):
                chunk = chunks_read.popleft()
                sink.write(source, chunk, preds)
                summary.rows += len(chunk)
                summary.errors += len(chunk) - preds.column(error_index).null_count
                summary.truncated += sum(1 for t in preds.column(truncated_index).to_pylist() if t)
                now = time.perf_counter()
                summary.seconds = now - started
                if checkpointing and now - last_checkpoint >= options.checkpoint_seconds:
                    save_checkpoint()
                    last_checkpoint = now
                bar.update(summary.rows, summary.rows_per_second)
                if on_progress is not None:
                    on_progress(summary)
            if checkpointing:
                save_checkpoint(finished=True)
            sink.finish(source, pred_schema)
            if checkpointing:
                checkpoint_path(output).unlink(missing_ok=True)
            summary.seconds = time.perf_counter() - started
            bar.update(summary.rows, summary.rows_per_second)
    except BaseException:
        sink.abort()
        raise
    return summary


def _restore_counts(summary: Summary, saved: dict[str, Any]) -> int:
    """Carry a checkpoint's counts into ``summary``; returns the rows already written."""
    summary.rows = summary.resumed_from = int(saved["rows"])
    summary.errors = int(saved.get("errors", 0))
    summary.truncated = int(saved.get("truncated", 0))
    return summary.rows


def _check_frozen_columns(frozen: list[str], columns: list[str]) -> None:
    """Columnar output from stdin JSON Lines: the first chunk fixes the columns."""
    new = [c for c in columns if c not in frozen]
    if new:
        raise FileFormatError(
            f"stdin has field(s) {', '.join(new)} that its first chunk lacked; "
            "write JSON Lines, or read from a file"
        )
