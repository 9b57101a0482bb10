"""Scoring a column of raw values into prediction columns, and the scorers that do it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

import pyarrow as pa

from ..interface import Model
from .formats import Invalid

SCORE_DECIMALS = 6


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


def score_texts(
    clf: Model, values: Sequence[object], *, prefix: str = "", fail_long: bool = False
) -> pa.Table:
    """Score raw column values; returns the prediction columns, one row per value.

    Values that are not non-blank strings get an ``error`` and null predictions; with
    ``fail_long`` texts longer than the model's token limit do too, instead of being
    scored truncated.
    """
    n = len(values)
    errors = [text_problem(v) for v in values]
    ok = [i for i, e in enumerate(errors) if e is None]
    texts = [cast(str, values[i]) for i in ok]  # text_problem passed: non-blank strings
    preds = clf.predict(texts) if texts else []
    label: list[str | None] = [None] * n
    label_zh: list[str | None] = [None] * n
    confidence: list[float | None] = [None] * n
    scores: dict[str, list[float | None]] = {name: [None] * n for name in clf.labels}
    truncated: list[bool | None] = [None] * n
    for i, pred in zip(ok, preds, strict=True):
        truncated[i] = pred.truncated
        if fail_long and (pred.truncated or pred.windows > 1):  # too long: cut or windowed
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

    def close(self) -> None:
        """Release what the scorer holds (Ray actors); called once scoring is over."""
        ...


def model_identity(model: Model) -> dict[str, Any]:
    """What identifies a loaded model for the resume fingerprint: its name, the variant
    it runs and its sha256 (the graph's, or an ensemble manifest's, which pins every
    member's files), and how it reads long texts (cut or windows: a resumed run must not
    mix the two), as :meth:`~qinggan.interface.Model.info` reports them."""
    info = model.info()
    identity = {"model": info["name"], "variant": info["variant"], "sha256": info["sha256"]}
    if info.get("long_texts") is not None:
        identity["long_texts"] = info["long_texts"]
    return identity


class LocalScorer:
    """Scores chunks in this process with one loaded :class:`~qinggan.interface.Model`."""

    def __init__(self, clf: Model) -> None:
        self.clf = clf
        self.labels: tuple[str, ...] = clf.labels

    def identity(self) -> dict[str, Any]:
        return model_identity(self.clf)

    def map(
        self, chunks: Iterable[Sequence[object]], *, prefix: str = "", fail_long: bool = False
    ) -> Iterator[pa.Table]:
        for values in chunks:
            yield score_texts(self.clf, values, prefix=prefix, fail_long=fail_long)

    def close(self) -> None:
        """Nothing to release: the model belongs to the caller."""
