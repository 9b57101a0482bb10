"""Writing a store's corrections to a file: CSV, TSV, JSON Lines or Parquet.

The file scorer's sinks (``qinggan.files.writers``) are built around resumable chunks of
an input file; an export has no input and no resume, so it streams through pyarrow's
own incremental writers instead, into ``FILE.partial`` renamed onto ``FILE`` once
complete (a failed export never leaves a truncated file under the asked-for name).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from ..files.formats import STDIO, FileFormatError, output_format
from .store import Correction

BATCH_ROWS = 10_000

# ``text,label`` first: what ``qinggan adapt`` and any trainer read; then the record.
SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.string()),
        ("predicted", pa.string()),
        ("confidence", pa.float64()),
        ("model", pa.string()),
        ("model_sha256", pa.string()),
        ("created_at", pa.string()),
        ("updated_at", pa.string()),
        ("revisions", pa.int64()),
        ("id", pa.int64()),
    ]
)
FORMATS = ("csv", "tsv", "jsonl", "parquet")


def _batches(corrections: Iterable[Correction]) -> Iterator[pa.RecordBatch]:
    iterator = iter(corrections)
    while chunk := list(islice(iterator, BATCH_ROWS)):
        yield pa.RecordBatch.from_pylist([c.to_dict() for c in chunk], schema=SCHEMA)


def _write_jsonl(fh: IO[bytes], corrections: Iterable[Correction]) -> int:
    rows = 0
    for correction in corrections:
        fh.write(orjson.dumps(correction.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
        rows += 1
    return rows


def _write_table(path: Path, fmt: str, corrections: Iterable[Correction]) -> int:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    writer: Any
    if fmt == "parquet":
        writer = pq.ParquetWriter(path, SCHEMA)
    else:
        options = pa_csv.WriteOptions(delimiter="," if fmt == "csv" else "\t")
        writer = pa_csv.CSVWriter(path, SCHEMA, write_options=options)
    rows = 0
    with writer:
        for batch in _batches(corrections):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def export(corrections: Iterable[Correction], out: str) -> int:
    """Write ``corrections`` to ``out`` (format from its extension; ``-``: JSON Lines on
    stdout); the number of rows written."""
    fmt = output_format(out)
    if fmt not in FORMATS:
        raise FileFormatError(f"cannot export to {fmt}; use .csv, .tsv, .jsonl or .parquet")
    if out == STDIO:
        rows = _write_jsonl(sys.stdout.buffer, corrections)
        sys.stdout.buffer.flush()
        return rows
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    try:
        if fmt == "jsonl":
            with open(partial, "wb") as fh:
                rows = _write_jsonl(fh, corrections)
        else:
            rows = _write_table(partial, fmt, corrections)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if isinstance(exc, OSError):
            raise FileFormatError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    return rows
