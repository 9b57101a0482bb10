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
        self.space_id: int | None = tokenizer.token_to_id(" ")  # what whitespace becomes

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
        scorer_space = tokenizer.token_to_id(" ")
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
        scorer.space_id = scorer_space
        return scorer

    def prepare(self, text: str) -> PreparedText:
        """``text`` tokenised and looked up once, ready for any number of span queries."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        orders = []
        positions, columns, lengths, weights = [], [], [], []
        for order, (keys, weight, contribution) in self.orders.items():
            if len(ids) < order:
                continue
            found, index = _lookup(keys, _gram_keys(ids, order, self.base))
            if not found.any():
                continue
            contrib = np.where(found, contribution[index], 0.0)
            square = np.where(found, weight[index] ** 2, 0.0)
            orders.append((order, len(found), _prefix(contrib), _prefix(square)))
            at = np.flatnonzero(found)
            positions.append(at)
            columns.append(index[at] * 4 + order)  # one id per (n-gram, order)
            lengths.append(np.full(len(at), order))
            weights.append(weight[index[at]])
        repeats = (
            _repeat_pairs(
                np.concatenate(positions),
                np.concatenate(columns),
                np.concatenate(lengths),
                np.concatenate(weights),
            )
            if positions
            else None
        )
        space = self.space_id
        return PreparedText(
            self, offsets, ids == space if space is not None else None, orders, repeats
        )


class PreparedText:
    """One text's n-grams as prefix sums over their positions: a span's numerator and
    squared norm are two subtractions per n-gram order, plus the pairs of repeated n-grams
    that fall inside it."""

    def __init__(
        self,
        model: LinearNgram,
        offsets: np.ndarray,
        spaces: np.ndarray | None,
        orders: list[tuple[int, int, np.ndarray, np.ndarray]],
        repeats: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        self.model = model
        self.starts = offsets[:, 0]
        self.ends = offsets[:, 1]
        self.orders = orders
        self.repeats = repeats
        # the model strips a text's ends: a span read alone loses its edge spaces, so each
        # token position maps to the next non-space token (and back, for span ends)
        n = len(offsets)
        self.next_solid: np.ndarray | None = None
        self.prev_end: np.ndarray | None = None
        if spaces is not None and spaces.any():
            index = np.arange(n + 1)
            solid = np.append(~spaces, True)
            self.next_solid = np.minimum.accumulate(np.where(solid, index, n)[::-1])[::-1]
            ends = np.where(np.append(True, ~spaces), index, 0)
            self.prev_end = np.maximum.accumulate(ends)

    def probabilities(self, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """The model's probabilities for each span read alone, shape (n, labels)."""
        bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        first = np.searchsorted(self.starts, bounds[:, 0], side="left")  # tokens inside:
        last = np.searchsorted(self.ends, bounds[:, 1], side="right")  # [first, last)
        if self.next_solid is not None and self.prev_end is not None:
            first = self.next_solid[first]
            last = np.maximum(self.prev_end[last], first)
        dot = np.zeros(len(bounds))
        norm2 = np.zeros(len(bounds))
        for order, count, contrib, square in self.orders:
            lo = np.minimum(first, count)  # n-grams starting in [lo, hi) fit the span
            hi = np.clip(last - order + 1, lo, count)
            dot += contrib[hi] - contrib[lo]
            norm2 += square[hi] - square[lo]
        if self.repeats is not None and len(bounds):
            left, right_end, value = self.repeats
            near = right_end - left <= int((last - first).max())  # pairs that fit some span
            left, right_end, value = left[near], right_end[near], value[near]
            inside = (left[None, :] >= first[:, None]) & (right_end[None, :] <= last[:, None])
            norm2 += inside.astype(np.float64) @ value
        m = self.model
        z = np.where(norm2 > 0, dot / np.sqrt(np.maximum(norm2, 1e-24)), 0.0) + m.intercept
        return softmax(z[:, None] * m.select[None, :] / m.temperature)


def _keys(grams: np.ndarray, base: int) -> np.ndarray:
    keys = np.zeros(len(grams), dtype=np.int64)
    for column in range(grams.shape[1]):
        keys = keys * base + grams[:, column]
    return keys


def _gram_keys(ids: np.ndarray, order: int, base: int) -> np.ndarray:
    """The key of the n-gram starting at each position (``_keys`` of a sliding window)."""
    count = len(ids) - order + 1
    keys: np.ndarray = ids[:count].copy()
    for shift in range(1, order):
        keys = keys * base + ids[shift : shift + count]
    return keys


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[index] == keys, index


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1)
    np.cumsum(values, out=out[1:])
    return out


def _repeat_pairs(
    positions: np.ndarray, columns: np.ndarray, lengths: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(first start, second end, 2 w^2) for every pair of occurrences of one n-gram: a
    feature seen c times counts (c w)^2 in the norm, the plain sums only c w^2."""
    order = np.lexsort((positions, columns))  # by feature, then position
    columns, positions = columns[order], positions[order]
    lengths, weights = lengths[order], weights[order]
    lefts, rights, total = [], [], 0
    lag = 1
    while lag < len(columns) and total < MAX_REPEAT_PAIRS:
        same = np.flatnonzero(columns[lag:] == columns[:-lag])
        if same.size == 0:
            break  # no feature occurs lag + 1 times
        lefts.append(same)
        rights.append(same + lag)
        total += same.size
        lag += 1
    if not lefts:
        return None
    left, right = np.concatenate(lefts), np.concatenate(rights)
    return positions[left], positions[right] + lengths[right], 2 * weights[left] ** 2
