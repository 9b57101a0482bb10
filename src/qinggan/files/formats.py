"""File formats: which one a path holds, and the errors of reading files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import QingganError

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


class FileFormatError(QingganError):
    """An input or output file has an unknown format or cannot be read."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A row that could not be read; ``reason`` becomes its ``error`` value."""

    reason: str


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
