"""One scoring run, in named steps: plan (:mod:`.plan`), then read chunks, score them,
write them to the sink (:mod:`.writers`) and checkpoint (:class:`.checkpoints.Checkpointer`),
and at the end rename the output into place."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import QingganError
from .checkpoints import Checkpointer, ResumeError
from .formats import STDIO, FileFormatError, output_format
from .plan import Plan, ScoreOptions, check_collisions, make_plan
from .predictions import ChunkScorer
from .readers import Chunk, Source, open_source
from .writers import Sink, open_sink

__all__ = ["ScoreOptions", "Summary", "score_file"]


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

    def counts(self) -> dict[str, int]:
        """The counts a checkpoint records."""
        return {"rows": self.rows, "errors": self.errors, "truncated": self.truncated}

    def restore(self, saved: dict[str, Any]) -> None:
        """Carry the counts of the checkpoint a run continues from."""
        self.rows = self.resumed_from = int(saved["rows"])
        self.errors = int(saved.get("errors", 0))
        self.truncated = int(saved.get("truncated", 0))

    def add(self, rows: int, preds: pa.Table, prefix: str) -> None:
        """Count one scored chunk of ``rows`` rows."""
        self.rows += rows
        self.errors += rows - preds.column(f"{prefix}error").null_count
        self.truncated += sum(1 for t in preds.column(f"{prefix}truncated").to_pylist() if t)


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
    package docstring). Returns a :class:`Summary`.
    """
    options = options or ScoreOptions()
    _check_paths(input_path, output_path, options)
    source = open_source(input_path, options.text_column, options.input_format)
    try:
        plan = make_plan(source, input_path, output_path, scorer, options)
        summary = Summary(output=output_path)
        if plan.saved is not None:
            summary.restore(plan.saved)
        if plan.complete:
            return summary
        sink = open_sink(output_path, plan.output_format, plan.sink_state)
        try:
            _score(source, plan, sink, scorer, options, summary, on_progress)
        except BaseException:
            sink.abort()  # keeps what was written for a later resume
            raise
        return summary
    finally:
        source.close()


def _check_paths(input_path: str, output_path: str, options: ScoreOptions) -> None:
    """User mistakes found before anything is read or written."""
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


def _score(
    source: Source,
    plan: Plan,
    sink: Sink,
    scorer: ChunkScorer,
    options: ScoreOptions,
    summary: Summary,
    on_progress: Callable[[Summary], None] | None,
) -> None:
    """Score the chunks after ``plan.skip`` into ``sink``, checkpointing as it goes, then
    complete the output."""
    from ..progress import RowProgress

    show = options.progress and sys.stderr.isatty()
    label = Path(plan.input_path).name if plan.input_path != STDIO else "stdin"
    checkpointer = Checkpointer(
        Path(plan.output_path), plan.fingerprint, options.checkpoint_seconds
    )
    started = time.perf_counter()
    reader = _ReadAhead(source, plan)
    with RowProgress(label, source.count_rows() if show else None, enabled=show) as bar:
        chunks = reader.texts(source.chunks(options.chunk_size, plan.skip))
        for preds in scorer.map(chunks, prefix=options.prefix, fail_long=options.fail_long):
            chunk = reader.pop()
            sink.write(source, chunk, preds)
            summary.add(len(chunk), preds, options.prefix)
            now = time.perf_counter()
            summary.seconds = now - started
            checkpointer.maybe_save(sink, summary.counts(), now)
            bar.update(summary.rows, summary.rows_per_second)
            if on_progress is not None:
                on_progress(summary)
        checkpointer.save(sink, summary.counts(), finished=True)
        sink.finish(source, plan.pred_schema)
        checkpointer.remove()
        summary.seconds = time.perf_counter() - started
        bar.update(summary.rows, summary.rows_per_second)


class _ReadAhead:
    """The chunks handed to a scorer, remembered in order until their predictions return
    (scorers may read ahead: Ray keeps several chunks in flight)."""

    def __init__(self, source: Source, plan: Plan) -> None:
        self.source = source
        self.plan = plan
        self.pending: deque[Chunk] = deque()
        self.frozen_columns: list[str] = []

    def texts(self, chunks: Iterator[Chunk]) -> Iterator[list[object]]:
        for chunk in chunks:
            if self.source.growing:  # stdin JSON Lines: fields are discovered as rows arrive
                self._check_new_columns()
            self.pending.append(chunk)
            yield chunk.texts

    def pop(self) -> Chunk:
        """The oldest chunk whose predictions have not been written yet."""
        return self.pending.popleft()

    def _check_new_columns(self) -> None:
        columns = self.source.columns
        check_collisions(columns, self.plan.pred_schema)
        if self.plan.output_format == "jsonl":
            return
        # Columnar output from stdin JSON Lines: the first chunk fixes the columns.
        self.frozen_columns = self.frozen_columns or list(columns)
        new = [c for c in columns if c not in self.frozen_columns]
        if new:
            raise FileFormatError(
                f"stdin has field(s) {', '.join(new)} that its first chunk lacked; "
                "write JSON Lines, or read from a file"
            )
