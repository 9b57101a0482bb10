"""Exact scores for the character n-gram model without running it: its weights, read
from the ONNX file, make any span's probability a few sums.

The graph is ``z = (tfidf . coef) / ||tfidf|| + intercept`` over the 1..3-grams of the
text's characters (``qinggan.train.ngram``). The n-grams that lie inside a span are
exactly the ones the model would see if it read the span alone, so prefix sums over
n-gram positions give every span's numerator and squared norm at once; n-grams that repeat
inside a span add their cross terms to the norm, so the result is what ONNX Runtime
computes, to float precision, for any number of spans in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

from ..engine import softmax
from .onnxread import read_graph

if TYPE_CHECKING:
    from ..engine import Classifier

GRAPH_OPS = ["TfIdfVectorizer", "ReduceL2", "Max", "MatMul", "Div", "Add", "Mul"]
MAX_REPEAT_PAIRS = 200_000  # pairs of equal n-grams tracked for the norm (long texts)


class LinearNgram:
    """The n-gram model as numpy arrays: per n-gram order, sorted keys and their weights."""

    method = "ngram-exact"

    def __init__(
        self,
        tokenizer: Tokenizer,
        orders: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        intercept: float,
        select: np.ndarray,
        temperature: float,
    ) -> None:
        self.tokenizer = tokenizer
        self.orders = orders  # n -> (sorted keys, tf-idf weight, weight * coef)
        self.intercept = intercept
        self.select = select
        self.temperature = temperature
        self.base = tokenizer.get_vocab_size() + 2  # key radix: above every id

    @classmethod
    def of(cls, member: Classifier) -> LinearNgram | None:
        """The member's weights if its graph is the n-gram model's, else ``None``."""
        try:
            path = Path(member.bundle.model_path(member.variant))
            graph = read_graph(path.read_bytes())
        except (OSError, ValueError, IndexError, KeyError):
            return None
        if [n.op_type for n in graph.nodes] != GRAPH_OPS:
            return None
        attrs = graph.nodes[0].attributes
        if attrs.get("mode") != "TFIDF" or attrs.get("max_skip_count", 0) != 0:
            return None
        coef = graph.initializers["coef"].reshape(-1).astype(np.float64)
        pool = attrs["pool_int64s"]
        starts = [int(s) for s in attrs["ngram_counts"]] + [len(pool)]
        columns = attrs["ngram_indexes"]
        weights = np.asarray(attrs["weights"], dtype=np.float64)
        orders, entry = {}, 0
        for order in range(1, len(starts)):
            grams = pool[starts[order - 1] : starts[order]].reshape(-1, order)
            picked = columns[entry : entry + len(grams)]
            weight = weights[entry : entry + len(grams)]
            entry += len(grams)
            orders[order] = (grams, weight, weight * coef[picked])
        tokenizer = Tokenizer.from_file(str(member.bundle.tokenizer_path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        base = max(tokenizer.get_vocab_size(), int(pool.max()) + 1 if len(pool) else 0) + 2
        keyed = {}
        for order, (grams, weight, contribution) in orders.items():
            keys = _keys(grams, base)
            index = np.argsort(keys)
            keyed[order] = (keys[index], weight[index], contribution[index])
        scorer = cls(
            tokenizer,
            keyed,
            float(graph.initializers["intercept"].reshape(-1)[0]),
            graph.initializers["select_positive"].astype(np.float64).reshape(-1),
            float(member.bundle.manifest.temperature),
        )
        scorer.base = base
        return scorer

    def probabilities(self, text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """The model's probabilities for each span of ``text`` read alone, shape (n, labels)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        # the model strips a text's ends: a span read alone loses its edge whitespace
        bounds = np.asarray([_strip(text, a, b) for a, b in spans], dtype=np.int64).reshape(-1, 2)
        first = np.searchsorted(offsets[:, 0], bounds[:, 0], side="left")  # tokens inside
        last = np.searchsorted(offsets[:, 1], bounds[:, 1], side="right")  # [first, last)
        dot = np.zeros(len(bounds))
        norm2 = np.zeros(len(bounds))
        for order, (keys, weight, contribution) in self.orders.items():
            if len(ids) < order:
                continue
            found, index = _lookup(keys, _gram_keys(ids, order, self.base))
            if not found.any():
                continue
            contrib = np.where(found, contribution[index], 0.0)
            square = np.where(found, weight[index] ** 2, 0.0)
            lo = np.minimum(first, len(found))  # n-grams starting in [lo, hi) fit the span
            hi = np.clip(last - order + 1, lo, len(found))
            dot += _range_sums(contrib, lo, hi)
            norm2 += _range_sums(square, lo, hi)
            norm2 += _repeat_terms(np.flatnonzero(found), index, weight, lo, hi)
        z = np.where(norm2 > 0, dot / np.sqrt(np.maximum(norm2, 1e-24)), 0.0) + self.intercept
        return softmax(z[:, None] * self.select[None, :] / self.temperature)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _keys(grams: np.ndarray, base: int) -> np.ndarray:
    keys = np.zeros(len(grams), dtype=np.int64)
    for column in range(grams.shape[1]):
        keys = keys * base + grams[:, column]
    return keys


def _gram_keys(ids: np.ndarray, order: int, base: int) -> np.ndarray:
    """The key of the n-gram starting at each position (``_keys`` of a sliding window)."""
    count = len(ids) - order + 1
    keys = ids[:count].copy()
    for shift in range(1, order):
        keys = keys * base + ids[shift : shift + count]
    return keys


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[index] == keys, index


def _range_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    prefix = np.concatenate(([0.0], np.cumsum(values)))
    return prefix[hi] - prefix[lo]


def _repeat_terms(
    positions: np.ndarray, index: np.ndarray, weight: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """2 w^2 for each pair of equal n-grams inside a span: a feature seen c times counts
    (c w)^2 in the norm, the plain sums above only c w^2."""
    columns = index[positions]
    order = np.argsort(columns, kind="stable")  # positions stay ascending within a feature
    columns, positions = columns[order], positions[order]
    lefts, rights, total = [], [], 0
    lag = 1
    while lag < len(columns) and total < MAX_REPEAT_PAIRS:
        same = np.flatnonzero(columns[lag:] == columns[:-lag])
        if same.size == 0:
            break  # no feature occurs lag + 1 times
        lefts.append(positions[same])
        rights.append(positions[same + lag])
        total += same.size
        lag += 1
    if not lefts:
        return np.zeros(len(lo))
    left, right = np.concatenate(lefts), np.concatenate(rights)
    value = 2 * weight[index[left]] ** 2
    inside = (left[None, :] >= lo[:, None]) & (right[None, :] < hi[:, None])
    return inside.astype(np.float64) @ value
