"""Output sinks: stdout, appended text formats, and Parquet parts joined at the end."""

from __future__ import annotations

import os
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .checkpoints import ResumeError, partial_path, parts_path
from .formats import STDIO
from .readers import Chunk, Source

PARQUET_ROW_GROUP = 65_536


def _encode_records(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(
        orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS, default=str)
        for r in rows
    )


class Sink(ABC):
    """A destination that can be checkpointed: ``state()`` after ``sync()`` is safe to resume."""

    @abstractmethod
    def write(self, source: Source, chunk: Chunk, preds: pa.Table) -> None: ...

    def sync(self) -> dict[str, Any]:
        """Make everything written durable; returns the state to record in the checkpoint."""
        return {}

    @abstractmethod
    def finish(self, source: Source, pred_schema: pa.Schema) -> None:
        """Complete the output (rename onto the final path)."""

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Release open files after an error; keeps what was written for a later resume."""


class StdoutSink(Sink):
    """JSON Lines on stdout, flushed after every chunk."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.stream = stream or sys.stdout.buffer

    def write(self, source: Source, chunk: Chunk, preds: pa.Table) -> None:
        self.stream.write(_encode_records(_merged_records(source, chunk, preds)))
        self.stream.flush()

    def finish(self, source: Source, pred_schema: pa.Schema) -> None:
        self.stream.flush()


def _merged_records(source: Source, chunk: Chunk, preds: pa.Table) -> Iterator[dict[str, Any]]:
    rows = chunk.records if chunk.records is not None else source.as_table(chunk).to_pylist()
    for row, pred in zip(rows, preds.to_pylist(), strict=True):
        yield {**row, **pred}


def _merged_table(source: Source, chunk: Chunk, preds: pa.Table) -> pa.Table:
    table = source.as_table(chunk)
    for name, column in zip(preds.column_names, preds.columns, strict=True):
        table = table.append_column(name, column)
    return table


class AppendSink(Sink):
    """CSV, TSV, text (written as TSV) or JSON Lines, appended to ``OUT.partial``."""

    def __init__(self, path: Path, fmt: str, *, resume_bytes: int | None = None) -> None:
        self.path = path
        self.partial = partial_path(path)
        self.fmt = fmt
        self.delimiter = "," if fmt == "csv" else "\t"
        self.fh: IO[bytes]
        if resume_bytes is None:
            self.fh = open(self.partial, "wb")  # noqa: SIM115 - closed in finish/abort
        else:
            self.fh = open(self.partial, "r+b")  # noqa: SIM115
            self.fh.truncate(resume_bytes)
            self.fh.seek(resume_bytes)
        self.header_written = bool(resume_bytes)

    def _csv_bytes(self, table: pa.Table, header: bool) -> bytes:
        buffer = pa.BufferOutputStream()
        options = pa_csv.WriteOptions(include_header=header, delimiter=self.delimiter)
        pa_csv.write_csv(table, buffer, write_options=options)
        data: bytes = buffer.getvalue().to_pybytes()
        return data

    def write(self, source: Source, chunk: Chunk, preds: pa.Table) -> None:
        if self.fmt == "jsonl":
            self.fh.write(_encode_records(_merged_records(source, chunk, preds)))
            return
        self.fh.write(self._csv_bytes(_merged_table(source, chunk, preds), not self.header_written))
        self.header_written = True

    def sync(self) -> dict[str, Any]:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return {"bytes": self.fh.tell()}

    def finish(self, source: Source, pred_schema: pa.Schema) -> None:
        if self.fmt != "jsonl" and not self.header_written:
            empty = _unify(source.schema(), pred_schema).empty_table()
            self.fh.write(self._csv_bytes(empty, True))
        self.sync()
        self.fh.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self.fh.close()


def _unify(inputs: pa.Schema, preds: pa.Schema) -> pa.Schema:
    return pa.schema([*inputs, *preds])


class ParquetSink(Sink):
    """Parquet: one part file per chunk in ``OUT.parts/``, joined into ``OUT`` at the end."""

    def __init__(self, path: Path, *, resume_parts: int | None = None) -> None:
        self.path = path
        self.parts_dir = parts_path(path)
        if resume_parts is None:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.parts = resume_parts or 0
        for stale in self.parts_dir.iterdir():  # parts written after the last checkpoint
            if not stale.name.startswith("part-") or self._index(stale) >= self.parts:
                stale.unlink()

    @staticmethod
    def _index(part: Path) -> int:
        try:
            return int(part.stem.split("-")[1])
        except (IndexError, ValueError):
            return 1 << 62

    def _part(self, index: int) -> Path:
        return self.parts_dir / f"part-{index:07d}.parquet"

    def write(self, source: Source, chunk: Chunk, preds: pa.Table) -> None:
        target = self._part(self.parts)
        tmp = target.with_suffix(".tmp")
        pq.write_table(_merged_table(source, chunk, preds), tmp)
        os.replace(tmp, target)
        self.parts += 1

    def sync(self) -> dict[str, Any]:
        return {"parts": self.parts}

    def finish(self, source: Source, pred_schema: pa.Schema) -> None:
        partial = partial_path(self.path)
        schema = _unify(source.schema(), pred_schema)
        with pq.ParquetWriter(partial, schema) as writer:
            pending: list[pa.Table] = []
            rows = 0
            for index in range(self.parts):
                table = pq.read_table(self._part(index))
                pending.append(table)
                rows += table.num_rows
                if rows >= PARQUET_ROW_GROUP:
                    writer.write_table(pa.concat_tables(pending), row_group_size=PARQUET_ROW_GROUP)
                    pending, rows = [], 0
            if pending or self.parts == 0:
                writer.write_table(pa.concat_tables(pending) if pending else schema.empty_table())
        with open(partial, "rb") as fh:  # durable before it becomes OUT
            os.fsync(fh.fileno())
        os.replace(partial, self.path)
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def open_sink(output_path: str, fmt: str, resume: dict[str, Any] | None = None) -> Sink:
    """The sink for ``output_path`` in ``fmt``; ``resume`` is the sink state recorded by
    the checkpoint a run continues from (``None``: start a new output)."""
    if output_path == STDIO:
        return StdoutSink()
    output = Path(output_path)
    if fmt == "parquet":
        return ParquetSink(output, resume_parts=None if resume is None else resume.get("parts"))
    if resume is not None and not partial_path(output).is_file():
        raise ResumeError(f"cannot resume: {partial_path(output)} is missing; pass --no-resume")
    return AppendSink(output, fmt, resume_bytes=None if resume is None else resume.get("bytes"))
