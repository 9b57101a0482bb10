"""Batch scoring of files: CSV, TSV, JSON Lines, Parquet and plain text, streamed and resumable.

Reading is streamed in chunks of ``chunk_size`` rows (pyarrow's streaming CSV reader,
``ParquetFile.iter_batches``, line iteration for JSON Lines and text), so memory stays
flat whatever the file size. Every output row is its input row plus ``label``,
``label_zh``, ``confidence``, one ``score_<label>`` per label, ``truncated`` and
``error``; a row whose text is empty, missing or not a string gets an ``error`` value and
empty predictions instead of stopping the run. The output format follows the output
file's extension; ``-`` means stdin/stdout (JSON Lines; stdin may also be plain text).

Resuming. Output goes to ``OUT.partial`` (text formats, appended chunk by chunk) or to
one file per chunk in ``OUT.parts/`` (Parquet, which cannot be appended to), next to a
checkpoint ``OUT.checkpoint.json`` holding the rows done, the byte length / part count
that matches them and a fingerprint of the input (size + sha256) and of every option
that changes the output. The data is fsynced before the checkpoint is replaced
atomically, so a killed run leaves at worst some extra bytes or parts beyond the
checkpoint, which a restart discards. Restarting the same command continues after the
last checkpoint (``--resume`` insists on one, ``--no-resume`` starts over); a changed
input or option is refused. When the input ends, the checkpoint is marked finished, the
partial file (or the Parquet parts joined into one file) is renamed onto ``OUT`` and the
checkpoint removed, so a file at ``OUT`` is always complete; a run killed between the
rename and the removal is recognised as complete when restarted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .errors import QingganError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
STDIO = "-"
DEFAULT_CHUNK_SIZE = 1024
CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY_S = 1.0  # override with $QINGGAN_CHECKPOINT_SECONDS (0 = every chunk)
CHECKPOINT_ENV = "QINGGAN_CHECKPOINT_SECONDS"
PARQUET_ROW_GROUP = 65_536
CSV_BLOCK_SIZE = 1 << 20
SCORE_DECIMALS = 6


class FileFormatError(QingganError):
    """An input or output file has an unknown format or cannot be read."""


class ResumeError(QingganError):
    """A checkpoint is missing, unreadable or belongs to a different run."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A row that could not be read; ``reason`` becomes its ``error`` value."""

    reason: str


# --------------------------------------------------------------------------- formats


def detect_format(path: str, explicit: str = "auto") -> tuple[str, bool]:
    """The format of ``path`` and whether it is gzip-compressed (from ``.gz``)."""
    if explicit != "auto":
        if explicit not in FORMATS:
            raise FileFormatError(f"unknown format {explicit!r}; choose from {', '.join(FORMATS)}")
        return explicit, path.lower().endswith(".gz")
    name = path.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in EXTENSIONS:
        known = ", ".join(sorted(EXTENSIONS))
        raise FileFormatError(
            f"cannot tell the format of {path!r} from its extension (known: {known}, "
            "optionally .gz for input); pass --format"
        )
    return EXTENSIONS[suffix], compressed


def output_format(path: str) -> str:
    """The format an output path asks for; ``-`` is JSON Lines on stdout."""
    if path == STDIO:
        return "jsonl"
    fmt, compressed = detect_format(path)
    if compressed:
        raise FileFormatError(
            f"compressed output ({path!r}) is not supported; write {path[:-3]!r} or use .parquet"
        )
    return fmt


# --------------------------------------------------------------------------- predictions


def prediction_schema(labels: Sequence[str], prefix: str = "") -> pa.Schema:
    """The columns added to every output row, in order."""
    fields = [
        pa.field(f"{prefix}label", pa.string()),
        pa.field(f"{prefix}label_zh", pa.string()),
        pa.field(f"{prefix}confidence", pa.float64()),
        *(pa.field(f"{prefix}score_{label}", pa.float64()) for label in labels),
        pa.field(f"{prefix}truncated", pa.bool_()),
        pa.field(f"{prefix}error", pa.string()),
    ]
    return pa.schema(fields)


def text_problem(value: object) -> str | None:
    """Why ``value`` cannot be scored, or ``None`` if it is a non-blank string."""
    if isinstance(value, Invalid):
        return value.reason
    if value is None:
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string (got {type(value).__name__})"
    if not value.strip():
        return "empty text"
    return None


class Predictor(Protocol):
    """What :func:`score_texts` needs from a classifier (``qinggan.engine.Classifier``)."""

    labels: tuple[str, ...]
    max_length: int

    def predict(self, texts: Sequence[str]) -> Sequence[Any]: ...


def score_texts(
    clf: Predictor, values: Sequence[object], *, prefix: str = "", fail_long: bool = False
) -> pa.Table:
    """Score raw column values; returns the prediction columns, one row per value.

    Values that are not non-blank strings get an ``error`` and null predictions; with
    ``fail_long`` texts longer than the model's token limit do too, instead of being
    scored truncated.
    """
    n = len(values)
    errors = [text_problem(v) for v in values]
    ok = [i for i, e in enumerate(errors) if e is None]
    preds = clf.predict([values[i] for i in ok]) if ok else []  # type: ignore[misc]
    label: list[str | None] = [None] * n
    label_zh: list[str | None] = [None] * n
    confidence: list[float | None] = [None] * n
    scores: dict[str, list[float | None]] = {name: [None] * n for name in clf.labels}
    truncated: list[bool | None] = [None] * n
    for i, pred in zip(ok, preds, strict=True):
        truncated[i] = pred.truncated
        if fail_long and pred.truncated:
            errors[i] = f"text is longer than the model's limit of {clf.max_length} tokens"
            continue
        label[i] = pred.label
        label_zh[i] = pred.label_zh
        confidence[i] = round(pred.confidence, SCORE_DECIMALS)
        for name, p in pred.scores.items():
            scores[name][i] = round(p, SCORE_DECIMALS)
    columns = [label, label_zh, confidence, *scores.values(), truncated, errors]
    return pa.Table.from_arrays(
        [pa.array(c) for c in columns], schema=prediction_schema(clf.labels, prefix)
    )


class ChunkScorer(Protocol):
    """Turns an ordered stream of text lists into an ordered stream of prediction tables."""

    labels: tuple[str, ...]

    def identity(self) -> dict[str, Any]:
        """What identifies the model, for the resume fingerprint."""
        ...

    def map(
        self, chunks: Iterable[Sequence[object]], *, prefix: str = "", fail_long: bool = False
    ) -> Iterator[pa.Table]:
        """Prediction columns (see :func:`score_texts`) for each chunk, in order."""
        ...


def model_identity(bundle: Any, variant: str) -> dict[str, Any]:
    """Name, variant and a digest of every file checksum the manifest lists (ensembles too)."""
    files = orjson.dumps(bundle.manifest.files, option=orjson.OPT_SORT_KEYS)
    return {"model": bundle.name, "variant": variant, "files": hashlib.sha256(files).hexdigest()}


class LocalScorer:
    """Scores chunks in this process with one :class:`~qinggan.engine.Classifier`."""

    def __init__(self, clf: Any) -> None:
        self.clf = clf
        self.labels: tuple[str, ...] = clf.labels

    def identity(self) -> dict[str, Any]:
        return model_identity(self.clf.bundle, self.clf.variant)

    def map(
        self, chunks: Iterable[Sequence[object]], *, prefix: str = "", fail_long: bool = False
    ) -> Iterator[pa.Table]:
        for values in chunks:
            yield score_texts(self.clf, values, prefix=prefix, fail_long=fail_long)


# --------------------------------------------------------------------------- reading


@dataclass
class Chunk:
    """Consecutive input rows: the raw text values plus the rows as a table or as records."""

    texts: list[object]
    table: pa.Table | None = None
    records: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _json_cell(value: object) -> str | None:
    """A JSON value as a table cell: strings and nulls as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class Source(ABC):
    """A streamed input with named columns."""

    columns: list[str]

    @abstractmethod
    def chunks(self, size: int, skip: int = 0) -> Iterator[Chunk]:
        """Chunks of exactly ``size`` rows (the last may be shorter), after ``skip`` rows."""

    def count_rows(self) -> int | None:
        """Rows in the input (a quick extra pass, for the progress bar); ``None`` if unknown."""
        return None

    def schema(self) -> pa.Schema:
        """The Arrow schema of the input columns (as tables handed to columnar writers)."""
        return pa.schema([pa.field(c, pa.string()) for c in self.columns])

    def as_table(self, chunk: Chunk) -> pa.Table:
        if chunk.table is not None:
            return chunk.table
        records = chunk.records or []
        arrays = [
            pa.array([_json_cell(r.get(c)) for r in records], pa.string()) for c in self.columns
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema())

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def _open_binary(path: str, compressed: bool) -> tuple[IO[bytes], IO[bytes]]:
    """(stream to read, raw file whose ``tell()`` measures progress)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the source
    except OSError as exc:
        raise FileFormatError(f"cannot read {path!r}: {exc.strerror}") from None
    if compressed:
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


class ArrowSource(Source):
    """Sources that yield Arrow record batches: re-chunked to exact sizes here."""

    text_column: str

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]: ...

    def chunks(self, size: int, skip: int = 0) -> Iterator[Chunk]:
        pending: list[pa.Table] = []
        pending_rows = 0
        for batch in self.batches():
            table = pa.Table.from_batches([batch])
            if skip:
                if table.num_rows <= skip:
                    skip -= table.num_rows
                    continue
                table = table.slice(skip)
                skip = 0
            pending.append(table)
            pending_rows += table.num_rows
            while pending_rows >= size:
                merged = pa.concat_tables(pending)
                yield self._chunk(merged.slice(0, size))
                rest = merged.slice(size)
                pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            yield self._chunk(pa.concat_tables(pending))

    def _chunk(self, table: pa.Table) -> Chunk:
        table = table.combine_chunks()
        return Chunk(texts=table.column(self.text_column).to_pylist(), table=table)


def _open_native(path: str, compressed: bool) -> tuple[pa.NativeFile, pa.NativeFile]:
    """Like :func:`_open_binary` but Arrow-native, so Arrow's reader threads never call
    back into Python (a Python file object there can abort the interpreter at exit)."""
    try:
        raw = pa.OSFile(path, "rb")
    except OSError as exc:
        raise FileFormatError(f"cannot read {path!r}: {exc}") from None
    if compressed:
        return pa.CompressedInputStream(raw, "gzip"), raw
    return raw, raw


class CsvSource(ArrowSource):
    """CSV/TSV through pyarrow's streaming reader; every column is read as text, verbatim."""

    def __init__(self, path: str, text_column: str, *, delimiter: str, compressed: bool) -> None:
        self.path = path
        self.text_column = text_column
        self.delimiter = delimiter
        self.compressed = compressed
        self._raw: pa.NativeFile | None = None
        stream, raw = _open_native(path, compressed)
        try:
            reader = pa_csv.open_csv(
                stream, read_options=self._read_options(), parse_options=self._parse_options()
            )
            self.columns = list(reader.schema.names)
            del reader
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            raise FileFormatError(f"cannot read {path!r} as CSV: {exc}") from None
        finally:
            stream.close()
            raw.close()
        if text_column not in self.columns:
            raise FileFormatError(
                f"{path!r} has no column {text_column!r} (columns: {', '.join(self.columns)}); "
                "pass --text-column"
            )

    def _read_options(self) -> pa_csv.ReadOptions:
        return pa_csv.ReadOptions(block_size=CSV_BLOCK_SIZE, use_threads=False)

    def _parse_options(self) -> pa_csv.ParseOptions:
        return pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)

    def batches(self) -> Iterator[pa.RecordBatch]:
        stream, self._raw = _open_native(self.path, self.compressed)
        convert = pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in self.columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=self._read_options(),
                parse_options=self._parse_options(),
                convert_options=convert,
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                yield batch
        except pa.ArrowInvalid as exc:
            raise FileFormatError(f"cannot read {self.path!r} as CSV: {exc}") from None
        finally:
            stream.close()

    def count_rows(self) -> int | None:
        stream, raw = _open_native(self.path, self.compressed)
        convert = pa_csv.ConvertOptions(
            column_types={self.text_column: pa.string()}, include_columns=[self.text_column]
        )
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=self._read_options(),
                parse_options=self._parse_options(),
                convert_options=convert,
            )
            return sum(batch.num_rows for batch in reader)
        except pa.ArrowInvalid:
            return None  # the scoring pass reports the problem
        finally:
            stream.close()
            raw.close()

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


class ParquetSource(ArrowSource):
    """Parquet through ``ParquetFile.iter_batches``; progress in rows."""

    def __init__(self, path: str, text_column: str) -> None:
        self.path = path
        self.text_column = text_column
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FileFormatError(f"cannot read {path!r} as Parquet: {exc}") from None
        self._schema = self._file.schema_arrow
        self.columns = list(self._schema.names)
        if text_column not in self.columns:
            raise FileFormatError(
                f"{path!r} has no column {text_column!r} (columns: {', '.join(self.columns)}); "
                "pass --text-column"
            )

    def schema(self) -> pa.Schema:
        return self._schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._file.iter_batches(batch_size=DEFAULT_CHUNK_SIZE)

    def count_rows(self) -> int | None:
        return int(self._file.metadata.num_rows)

    def close(self) -> None:
        self._file.close()


class LineSource(Source):
    """JSON Lines or plain text, one row per line, read from a file or a byte stream."""

    def __init__(
        self,
        path: str,
        text_column: str,
        *,
        fmt: str,
        compressed: bool = False,
        stream: IO[bytes] | None = None,
    ) -> None:
        self.path = path
        self.text_column = text_column
        self.fmt = fmt
        self.compressed = compressed
        self._stream = stream
        self._raw: IO[bytes] | None = None
        self.columns = [text_column]
        self.growing = stream is not None and fmt == "jsonl"  # columns seen so far only
        if stream is None:
            if fmt == "jsonl":
                self.columns = self._scan_columns()

    def _lines(self) -> Iterator[bytes]:
        if self._stream is not None:
            yield from self._stream
            return
        stream, self._raw = _open_binary(self.path, self.compressed)
        try:
            yield from stream
        except (OSError, EOFError) as exc:
            raise FileFormatError(f"cannot read {self.path!r}: {exc}") from None
        finally:
            stream.close()

    def _scan_columns(self) -> list[str]:
        """Every field name in the file, in order of first appearance (one quick pass)."""
        seen: dict[str, None] = {}
        for line in self._lines():
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                for key in obj:
                    seen.setdefault(key, None)
        if seen and self.text_column not in seen:
            raise FileFormatError(
                f"{self.path!r} has no field {self.text_column!r} in any line "
                f"(fields: {', '.join(seen)}); pass --text-column"
            )
        return list(seen) or [self.text_column]

    def _parse(self, line: bytes, number: int) -> tuple[dict[str, Any], object]:
        if self.fmt == "txt":
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            body = line.rstrip(b"\r\n")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("utf-8", "replace")
                return {self.text_column: text}, Invalid("line is not valid UTF-8")
            return {self.text_column: text}, text
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return {}, Invalid(f"line {number} is not valid JSON: {exc}")
        if not isinstance(obj, dict):
            return {}, Invalid(f"line {number} is not a JSON object")
        if self.growing:
            for key in obj:
                if key not in self.columns:
                    self.columns.append(key)
        return obj, obj.get(self.text_column)

    def chunks(self, size: int, skip: int = 0) -> Iterator[Chunk]:
        records: list[dict[str, Any]] = []
        texts: list[object] = []
        number = 0
        row = 0
        for line in self._lines():
            number += 1
            if self.fmt == "jsonl" and not line.strip():
                continue  # blank lines are not rows in JSON Lines
            row += 1
            if row <= skip:
                continue
            record, text = self._parse(line, number)
            records.append(record)
            texts.append(text)
            if len(texts) >= size:
                yield Chunk(texts=texts, records=records)
                records, texts = [], []
        if texts:
            yield Chunk(texts=texts, records=records)

    def count_rows(self) -> int | None:
        if self._stream is not None:
            return None
        if self.fmt == "txt":
            return sum(1 for _ in self._lines())
        return sum(1 for line in self._lines() if line.strip())

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


def open_source(path: str, text_column: str, fmt: str = "auto") -> Source:
    """A streamed reader for ``path`` (``-`` is stdin: JSON Lines, or plain text if it isn't)."""
    if path == STDIO:
        return _stdin_source(text_column, fmt)
    if not os.path.isfile(path):
        raise FileFormatError(f"input {path!r} does not exist or is not a file")
    kind, compressed = detect_format(path, fmt)
    if kind in ("csv", "tsv"):
        return CsvSource(
            path, text_column, delimiter="," if kind == "csv" else "\t", compressed=compressed
        )
    if kind == "parquet":
        if compressed:
            raise FileFormatError("Parquet is compressed internally; do not gzip it")
        return ParquetSource(path, text_column)
    return LineSource(path, text_column, fmt=kind, compressed=compressed)


def _stdin_source(text_column: str, fmt: str) -> Source:
    if fmt not in ("auto", "jsonl", "txt"):
        raise FileFormatError(f"stdin can be JSON Lines or plain text, not {fmt}")
    stream: IO[bytes] = sys.stdin.buffer
    if fmt == "auto":
        # Peek at the first line: JSON Lines if it holds an object, plain text otherwise.
        buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
        head = buffered.peek(1 << 16)[: 1 << 16].lstrip(b"\xef\xbb\xbf \t\r\n")  # type: ignore[attr-defined]
        fmt = "jsonl" if head.startswith(b"{") else "txt"
        stream = buffered
    return LineSource(STDIO, text_column, fmt=fmt, stream=stream)


# --------------------------------------------------------------------------- writing


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
        return buffer.getvalue().to_pybytes()

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


# --------------------------------------------------------------------------- checkpoints


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def parts_path(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".checkpoint.json")


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(input_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must be unchanged for a run to be resumed: the input's content and the options."""
    return {
        "input": {"size": os.path.getsize(input_path), "sha256": file_digest(input_path)},
        "options": options,
    }


def describe_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    if saved.get("input") != current["input"]:
        return "the input file has changed since the interrupted run"
    changed = [
        f"{key} {saved.get('options', {}).get(key)!r} -> {value!r}"
        for key, value in current["options"].items()
        if saved.get("options", {}).get(key) != value
    ]
    return "options changed: " + ("; ".join(changed) or "unknown")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(output: Path) -> dict[str, Any] | None:
    path = checkpoint_path(output)
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise ResumeError(
            f"checkpoint {path} is corrupt; delete it (or pass --no-resume) to start over"
        ) from None
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"checkpoint {path} is from another qinggan version; pass --no-resume")
    return data


def clear_run_files(output: Path) -> None:
    """Remove every trace of an interrupted run for ``output``."""
    for path in (partial_path(output), checkpoint_path(output)):
        path.unlink(missing_ok=True)
    shutil.rmtree(parts_path(output), ignore_errors=True)


# --------------------------------------------------------------------------- the run


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
    pred_schema = prediction_schema(scorer.labels, options.prefix)
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
                summary.rows = summary.resumed_from = int(saved["rows"])
                summary.errors = int(saved.get("errors", 0))
                summary.truncated = int(saved.get("truncated", 0))
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
            skip = int(saved["rows"])
            sink_state = saved.get("sink", {})
            summary.rows = summary.resumed_from = skip
            summary.errors = int(saved.get("errors", 0))
            summary.truncated = int(saved.get("truncated", 0))
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

    from .progress import RowProgress

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


def _check_frozen_columns(frozen: list[str], columns: list[str]) -> None:
    """Columnar output from stdin JSON Lines: the first chunk fixes the columns."""
    new = [c for c in columns if c not in frozen]
    if new:
        raise FileFormatError(
            f"stdin has field(s) {', '.join(new)} that its first chunk lacked; "
            "write JSON Lines, or read from a file"
        )
