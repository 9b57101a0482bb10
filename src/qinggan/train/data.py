"""Labelled text files: reading ``text,label`` CSV/JSONL (optionally gzip'd) and the
``<source>/<split>.csv.gz`` layout of the shared data directory. No torch here."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import QingganError

SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".json.gz", ".json")


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    source: str


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _parse_label(value: object, where: str) -> int:
    try:
        label = int(str(value).strip())
    except ValueError:
        raise QingganError(f"{where}: label must be 0 or 1, got {value!r}") from None
    if label not in (0, 1):
        raise QingganError(f"{where}: label must be 0 or 1, got {label}")
    return label


def _rows(path: Path) -> Iterator[tuple[str, object, str]]:
    name = path.name
    with _open_text(path) as fh:
        if ".jsonl" in name or name.endswith((".json", ".json.gz")):
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise QingganError(f"{path}:{lineno}: not valid JSON ({exc})") from None
                if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
                    raise QingganError(f"{path}:{lineno}: expected an object with text and label")
                yield str(obj["text"]), obj["label"], f"{path}:{lineno}"
        else:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise QingganError(f"{path}: needs a header with 'text' and 'label' columns")
            for lineno, row in enumerate(reader, 2):
                yield row["text"] or "", row["label"], f"{path}:{lineno}"


def read_labelled(path: str | Path, source: str | None = None) -> list[Example]:
    """Read a ``text,label`` CSV or JSONL file (``.gz`` allowed); label 0=negative, 1=positive."""
    path = Path(path)
    if not path.is_file():
        raise QingganError(f"data file {str(path)!r} does not exist")
    if not path.name.endswith(SUFFIXES):
        raise QingganError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
    source = source or path.name.split(".")[0]
    return [Example(text, _parse_label(label, where), source) for text, label, where in _rows(path)]


def split_files(data_dir: str | Path, split: str) -> dict[str, Path]:
    """``{source: path}`` for every ``<source>/<split>.csv.gz`` under ``data_dir``."""
    root = Path(data_dir)
    if not root.is_dir():
        raise QingganError(f"data directory {str(root)!r} does not exist")
    found = {p.parent.name: p for p in sorted(root.glob(f"*/{split}.csv.gz"))}
    if not found:
        raise QingganError(f"no */{split}.csv.gz files under {root}")
    return found


def read_split(data_dir: str | Path, split: str, sources: list[str] | None = None) -> list[Example]:
    """All examples of ``split`` across sources (optionally only ``sources``)."""
    files = split_files(data_dir, split)
    if sources:
        unknown = sorted(set(sources) - set(files))
        if unknown:
            raise QingganError(f"unknown source(s) {unknown}; available: {sorted(files)}")
        files = {s: files[s] for s in sources}
    out: list[Example] = []
    for source, path in files.items():
        out.extend(read_labelled(path, source))
    return out


def sample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """A reproducible random subset of at most ``n`` examples (all of them when ``n`` is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    return random.Random(seed).sample(examples, n)


def dev_subset(dev: list[Example], rows: int, seed: int) -> list[Example]:
    """The dev texts a training run with ``seed`` evaluates on (early stopping, parity)."""
    return sample(dev, rows, seed + 1)
