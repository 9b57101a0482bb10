"""The user's labelled texts: reading them, naming their labels, checking them, splitting them.

Files are read with the same streaming readers as file scoring (CSV, TSV, JSON Lines,
Parquet, gzip), so every format ``qinggan predict --input`` takes works here too. Other
sources of ``(text, label)`` pairs (a corrections store, say) go through
:func:`from_pairs`, which applies the same label rules and checks.

Labels: 0/1, Negative/Positive, 正面/负面 and pos/neg in any case are the two sentiment
labels; Neutral/中性/2 adds a third. ``--labels a,b,c`` names any set instead (values then
match those names in any case, or their 0-based position).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files.formats import FileFormatError, Invalid, detect_format
from ..files.readers import Source, open_source
from .errors import AdaptError

MIN_PER_CLASS = 20
TEXT_COLUMNS = ("text", "review", "content", "sentence", "文本", "评论")
LABEL_COLUMNS = ("label", "sentiment", "polarity", "标签", "情感")
# canonical label -> the spellings that mean it (compared in lower case)
SPELLINGS = {
    "Negative": ("0", "negative", "neg", "负面", "负", "消极"),
    "Positive": ("1", "positive", "pos", "正面", "正", "积极"),
    "Neutral": ("2", "neutral", "neu", "中性", "中立"),
}
CANONICAL_ORDER = ("Negative", "Neutral", "Positive")


class AdaptDataError(AdaptError):
    """The labelled data cannot be adapted on (the message says which row and why)."""


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    label: int  # index into the label names


@dataclass(frozen=True)
class Labelled:
    """Checked rows, the label names (in the bundle's order) and what was dropped."""

    rows: tuple[Row, ...]
    labels: tuple[str, ...]
    sha256: str
    conflicting: int = 0  # texts seen with two labels (all their rows dropped)
    duplicates: int = 0  # repeated (text, label) rows dropped

    def counts(self) -> dict[str, int]:
        seen = Counter(r.label for r in self.rows)
        return {name: seen.get(i, 0) for i, name in enumerate(self.labels)}


class LabelMap:
    """Turns raw label values into label indexes (canonical names, or ``--labels``)."""

    def __init__(self, names: Sequence[str] | None = None) -> None:
        self.custom = tuple(n.strip() for n in names) if names else ()
        if self.custom and (len(set(self.custom)) != len(self.custom) or len(self.custom) < 2):
            raise AdaptDataError("--labels needs at least two different names")
        lookup: dict[str, str] = {}
        if self.custom:
            for i, name in enumerate(self.custom):
                lookup[name.lower()] = name
                lookup[str(i)] = name
        else:
            for name, spellings in SPELLINGS.items():
                lookup[name.lower()] = name
                lookup.update(dict.fromkeys(spellings, name))
        self._lookup = lookup

    def name(self, value: object) -> str | None:
        """The label ``value`` means, or ``None``."""
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self._lookup.get(str(value).strip().lower())

    def order(self, seen: Iterable[str]) -> tuple[str, ...]:
        """The label names of the bundle, in output order."""
        if self.custom:
            return self.custom
        present = set(seen)
        if present <= {"Negative", "Positive"}:
            return ("Negative", "Positive")
        return tuple(n for n in CANONICAL_ORDER if n in present or n != "Neutral")

    def known(self) -> str:
        if self.custom:
            return ", ".join(self.custom)
        return "0/1/2, negative/positive/neutral, neg/pos/neu, 负面/正面/中性"


def from_pairs(
    pairs: Iterable[tuple[object, object]],
    labels: Sequence[str] | None = None,
    *,
    where: str = "row",
    digest: str | None = None,
) -> Labelled:
    """Check ``(text, label)`` pairs and name their labels: the entry point for any source
    of labelled texts (a file here; a corrections store elsewhere)."""
    mapping = LabelMap(labels)
    named: list[tuple[str, str]] = []
    hasher = hashlib.sha256()
    for number, (text, value) in enumerate(pairs, 1):
        for cell in (text, value):
            if isinstance(cell, Invalid):
                raise AdaptDataError(f"{where} {number}: {cell.reason}")
        if not isinstance(text, str) or not text.strip():
            raise AdaptDataError(f"{where} {number}: empty or missing text")
        name = mapping.name(value)
        if name is None:
            raise AdaptDataError(
                f"{where} {number}: unknown label {value!r} (known: {mapping.known()}; "
                "other names: --labels)"
            )
        named.append((text.strip(), name))
        hasher.update(f"{text.strip()}\t{name}\n".encode())
    if not named:
        raise AdaptDataError("the data has no rows")
    return check(named, mapping.order(n for _, n in named), digest or hasher.hexdigest())


def check(named: list[tuple[str, str]], labels: tuple[str, ...], digest: str) -> Labelled:
    """Drop repeated rows and texts with two labels; require two classes of >= 20 rows."""
    by_text: dict[str, set[str]] = {}
    for text, name in named:
        by_text.setdefault(text, set()).add(name)
    conflicting = {t for t, names in by_text.items() if len(names) > 1}
    index = {name: i for i, name in enumerate(labels)}
    rows: list[Row] = []
    seen: set[str] = set()
    for text, name in named:
        if text in conflicting or text in seen:
            continue
        seen.add(text)
        rows.append(Row(text, index[name]))
    counts = Counter(labels[r.label] for r in rows)
    present = [n for n in labels if counts.get(n)]
    note = f" ({len(conflicting)} texts had two labels and were dropped)" if conflicting else ""
    if len(present) < 2:
        only = present[0] if present else "none"
        raise AdaptDataError(f"the data has a single class ({only}); adapting needs two{note}")
    few = [f"{n}: {counts.get(n, 0)}" for n in labels if counts.get(n, 0) < MIN_PER_CLASS]
    if few:
        raise AdaptDataError(
            f"every label needs at least {MIN_PER_CLASS} rows; too few for {', '.join(few)}{note}"
        )
    duplicates = len(named) - len(rows) - sum(1 for t, _ in named if t in conflicting)
    return Labelled(tuple(rows), labels, digest, len(conflicting), duplicates)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_utf8(path: Path, compressed: bool) -> None:
    """Fail with the byte offset if a text file is not UTF-8 (before any parsing)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    opener = gzip.open if compressed else open
    offset = 0
    try:
        with opener(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(block)
                offset += len(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise AdaptDataError(
            f"{path} is not UTF-8 (invalid byte near offset {offset + exc.start}); save it as UTF-8"
        ) from None
    except (OSError, EOFError) as exc:
        raise AdaptDataError(f"cannot read {path}: {exc}") from None


def _open(path: Path, text_column: str | None) -> Source:
    """A reader on ``path`` whose text column is ``text_column`` or the first default found."""
    candidates = [text_column] if text_column else list(TEXT_COLUMNS)
    problem = ""
    for candidate in candidates:
        try:
            return open_source(str(path), candidate)
        except FileFormatError as exc:
            problem = str(exc)
            if not any(f"no {kind} {candidate!r}" in problem for kind in ("column", "field")):
                raise AdaptDataError(problem) from None
    if text_column:
        raise AdaptDataError(problem)
    raise AdaptDataError(
        f"{path} has no text column (looked for {', '.join(TEXT_COLUMNS)}); pass --text-column"
    )


def _pairs(source: Source, path: Path, label_column: str | None) -> Iterator[tuple[object, object]]:
    """``(text, label)`` values of every row."""
    columns = source.columns
    candidates = [label_column] if label_column else list(LABEL_COLUMNS)
    label_col = next((c for c in candidates if c in columns), None)
    if label_col is None:
        wanted = repr(label_column) if label_column else f"(looked for {', '.join(LABEL_COLUMNS)})"
        raise AdaptDataError(
            f"{path} has no label column {wanted} (columns: {', '.join(columns)}); "
            "pass --label-column"
        )
    for chunk in source.chunks(4096):
        if chunk.records is not None:
            labels = [r.get(label_col) for r in chunk.records]
        else:
            labels = source.as_table(chunk).column(label_col).to_pylist()
        yield from zip(chunk.texts, labels, strict=True)


def read_labelled(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: Sequence[str] | None = None,
) -> Labelled:
    """Read and check a labelled CSV/TSV/JSON Lines/Parquet file (gzip allowed)."""
    path = Path(path)
    if not path.is_file():
        raise AdaptDataError(f"data file {str(path)!r} does not exist")
    try:
        kind, compressed = detect_format(str(path))
    except FileFormatError as exc:
        raise AdaptDataError(str(exc)) from None
    if kind == "txt":
        raise AdaptDataError(f"{path} is plain text; adapting needs a text and a label column")
    if kind != "parquet":
        check_utf8(path, compressed)
    source = _open(path, text_column)
    try:
        return from_pairs(
            _pairs(source, path, label_column), labels, where=f"{path.name} row",
            digest=file_sha256(path),
        )  # fmt: skip
    except FileFormatError as exc:
        raise AdaptDataError(str(exc)) from None
    finally:
        source.close()


def split(data: Labelled, fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """A stratified, seeded (train, validation) split: ``fraction`` of every label held out
    (at least one row each)."""
    if not 0 < fraction < 1:
        raise AdaptDataError(f"--val-fraction must be between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    train: list[Row] = []
    val: list[Row] = []
    for index in range(len(data.labels)):
        group = [r for r in data.rows if r.label == index]
        rng.shuffle(group)
        cut = min(len(group) - 1, max(1, round(len(group) * fraction)))
        val.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def read_pairs(
    path: str | Path, text_column: str | None = None, label_column: str | None = None
) -> list[tuple[object, object]]:
    """The raw ``(text, label)`` values of a labelled file, unchecked (for evaluation)."""
    path = Path(path)
    if not path.is_file():
        raise AdaptDataError(f"data file {str(path)!r} does not exist")
    source = _open(path, text_column)
    try:
        return list(_pairs(source, path, label_column))
    except FileFormatError as exc:
        raise AdaptDataError(str(exc)) from None
    finally:
        source.close()


def label_indexes(
    pairs: Iterable[tuple[object, object]], names: Sequence[str], where: str
) -> list[tuple[str, int]]:
    """``(text, index into names)`` for labelled rows scored by a model with label ``names``:
    sentiment spellings when the names are sentiment labels, else the names themselves."""
    mapping = LabelMap(None if set(names) <= set(SPELLINGS) else names)
    index = {name: i for i, name in enumerate(names)}
    out = []
    for number, (text, value) in enumerate(pairs, 1):
        name = mapping.name(value)
        if name not in index:
            raise AdaptDataError(
                f"{where} row {number}: label {value!r} is not one of the model's "
                f"({', '.join(names)})"
            )
        out.append((str(text), index[name]))
    return out


STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def is_store(target: str) -> bool:
    """Whether ``target`` names a corrections store (``qinggan serve --feedback-db``) rather
    than a file of rows: a PostgreSQL URL, a ``sqlite://`` URL or a SQLite file."""
    lowered = target.lower()
    return lowered.startswith(("postgres://", "postgresql://", "sqlite://")) or lowered.endswith(
        STORE_SUFFIXES
    )


def read_source(
    target: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: Sequence[str] | None = None,
) -> Labelled:
    """Labelled rows from a file (:func:`read_labelled`) or a corrections store, whose
    ``(text, label)`` pairs go through the same checks (:func:`from_pairs`)."""
    if not is_store(target):
        return read_labelled(
            target, text_column=text_column, label_column=label_column, labels=labels
        )
    from ..feedback import iter_corrections

    return from_pairs(iter_corrections(target), labels, where="correction")
