"""Streaming readers: CSV/TSV, Parquet, JSON Lines and text files (and stdin) in chunks."""

from __future__ import annotations

import gzip
import io
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .formats import STDIO, FileFormatError, Invalid, detect_format

CSV_BLOCK_SIZE = 1 << 20
DEFAULT_CHUNK_SIZE = 1024


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
    growing = False  # True while new columns may still appear (stdin JSON Lines)

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
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
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
            reader = self._open(stream)
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

    def _open(
        self, stream: pa.NativeFile, convert: pa_csv.ConvertOptions | None = None
    ) -> pa_csv.CSVStreamingReader:
        """A streaming reader over ``stream`` with this file's block size and delimiter."""
        return pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_SIZE, use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
            convert_options=convert,
        )

    def batches(self) -> Iterator[pa.RecordBatch]:
        stream, self._raw = _open_native(self.path, self.compressed)
        convert = pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in self.columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            reader = self._open(stream, convert)
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
            reader = self._open(stream, convert)
            return int(sum(batch.num_rows for batch in reader))
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
        buffered = (
            stream
            if isinstance(stream, io.BufferedReader)
            else io.BufferedReader(cast(io.RawIOBase, stream))
        )
        head = buffered.peek(1 << 16)[: 1 << 16].lstrip(b"\xef\xbb\xbf \t\r\n")
        fmt = "jsonl" if head.startswith(b"{") else "txt"
        stream = buffered
    return LineSource(STDIO, text_column, fmt=fmt, stream=stream)
