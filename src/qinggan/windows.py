"""Long texts read whole: overlapping, clause-aligned windows and their aggregation.

A text longer than a model's ``max_length`` tokens is not cut: it is split into windows
that each fit, cut where a clause ends when one is near (sentence punctuation first,
then commas and contrast words such as 但是), each window overlapping the previous one
by up to a quarter of a window so no clause is read without its lead-in. Every window is
a substring of the text, encoded exactly as if it had been given alone, and its code
point span is kept (explanations map a window's offsets back to the text with it).

The windows of a text run through the model's normal batch planner, so a 100,000
character text becomes many model calls of at most ``batch_size`` windows and
``max_batch_tokens`` padded tokens, never one giant batch; their probabilities are then
aggregated into one answer (:data:`AGGREGATION`, chosen on the dev splits by
``bench/longtext.py``; docs/model.md). Each model windows by its own tokenizer and
``max_length``: in an ensemble each member reads the text in its own windows and the
aggregated member answers are mixed as usual (a cascade's gate decides on its
aggregated answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tokenization import Encoded, TextEncoder

OVERLAP = 0.25  # at most this share of a window is read again by the next one
MARGIN_TOKENS = 2  # a window re-encoded alone may take a token or two more than in context

SENTENCE_END = re.compile(r"[。！？!?；;…\n]+[\s”’」』）)]*")
CLAUSE_END = re.compile(r"[，,、：:～~]+\s*")
CONTRAST = re.compile(r"但是|不过|可是|然而|只是|就是|但|却")


@dataclass(frozen=True, slots=True)
class Windowed:
    """One over-long text as windows: each window's tokens and its ``[start, end)`` code
    point span in the text. ``truncated`` only if a window itself had to be cut."""

    parts: tuple[Encoded, ...]
    spans: tuple[tuple[int, int], ...]
    truncated: bool

    def __len__(self) -> int:  # the work it costs the batch planner: every window's tokens
        return sum(len(p) for p in self.parts)

    @property
    def windows(self) -> int:
        return len(self.parts)


# -- splitting --------------------------------------------------------------------------


def clause_starts(text: str) -> dict[int, int]:
    """Code point offsets where a clause begins -> strength (2 after a sentence ends,
    1 after a comma or before a contrast word)."""
    starts: dict[int, int] = {}
    for match in CONTRAST.finditer(text):
        starts[match.start()] = 1
    for match in CLAUSE_END.finditer(text):
        starts[match.end()] = max(starts.get(match.end(), 0), 1)
    for match in SENTENCE_END.finditer(text):
        starts[match.end()] = 2
    starts.pop(0, None)
    starts.pop(len(text), None)
    return starts


def token_boundaries(offsets: Sequence[tuple[int, int]], starts: dict[int, int]) -> list[int]:
    """Strength of a cut before each token (0: mid-clause), from clause start offsets.

    A cut before token ``j`` is clause-aligned when a clause starts after the end of
    token ``j - 1`` and no later than the start of token ``j``.
    """
    strength = [0] * len(offsets)
    if len(offsets) < 2 or not starts:
        return strength
    ordered = np.array(sorted(starts))
    spans = np.array(offsets)
    # the clause starts in [end of token j - 1, start of token j], for every j at once
    first = np.searchsorted(ordered, spans[:-1, 1], side="left")
    last = np.searchsorted(ordered, spans[1:, 0], side="right")
    for j in np.flatnonzero(last > first).tolist():  # few: one per clause at most
        strength[j + 1] = max(starts[int(s)] for s in ordered[first[j] : last[j]])
    return strength


def plan_windows(strength: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of at most ``budget`` tokens covering every token.

    Each window ends at the latest sentence end in its second half, else the latest
    clause boundary there, else at the budget; the next starts at the first clause
    boundary within the last :data:`OVERLAP` of it (at its end if none). The last window
    is extended backwards to a full window, so no text is judged on a short tail alone.
    """
    n = len(strength)
    budget = max(1, budget)
    if n <= budget:
        return [(0, n)]
    overlap = int(budget * OVERLAP)
    windows: list[tuple[int, int]] = []
    start = 0
    while n - start > budget:
        limit = start + budget
        lowest = start + max(1, budget // 2)
        end = _best_cut(strength, lowest, limit) or limit
        windows.append((start, end))
        fallback = end if strength[end] else end - overlap  # overlap a hard cut anyway
        following = next((j for j in range(end - overlap, end) if strength[j]), fallback)
        start = max(following, start + 1)
    last = next((j for j in range(n - budget, start) if strength[j]), min(start, n - budget))
    windows.append((max(last, windows[-1][0] + 1), n))
    return windows


def _best_cut(strength: Sequence[int], lowest: int, limit: int) -> int | None:
    """The latest strongest clause boundary in ``[lowest, limit]``, if any."""
    best, where = 0, None
    for j in range(limit, lowest - 1, -1):
        if strength[j] > best:
            best, where = strength[j], j
            if best == 2:
                break
    return where


def split_text(text: str, encoder: TextEncoder) -> list[tuple[int, int]]:
    """Code point spans of ``text``'s windows for ``encoder``'s tokenizer and limit."""
    offsets = encoder.content_offsets(text)
    if not offsets:  # nothing to cut by (e.g. a prefix longer than the limit)
        return []
    budget = encoder.max_length - encoder.overhead_tokens - MARGIN_TOKENS
    ranges = plan_windows(token_boundaries(offsets, clause_starts(text)), budget)
    return [(offsets[s][0], offsets[e - 1][1]) for s, e in ranges]


def window_long_texts(
    encoder: TextEncoder, texts: Sequence[str], encoded: list[Encoded]
) -> list[Encoded | Windowed]:
    """``encoded`` with every truncated text replaced by its :class:`Windowed` form."""
    out: list[Encoded | Windowed] = list(encoded)
    for index, item in enumerate(encoded):
        if item.truncated:
            text = texts[index]
            spans = split_text(text, encoder)
            if len(spans) < 2:  # no shorter pieces to read it in: it stays cut
                continue
            parts = encoder.encode([text[a:b] for a, b in spans])
            out[index] = Windowed(tuple(parts), tuple(spans), any(p.truncated for p in parts))
    return out


# -- running and aggregating ------------------------------------------------------------


def flatten(batch: Sequence[Any]) -> tuple[list[Any], list[tuple[int, int]]]:
    """Every window (or plain text) of ``batch`` as rows, and each item's row range."""
    rows: list[Any] = []
    ranges = []
    for item in batch:
        begin = len(rows)
        if isinstance(item, Windowed):
            rows.extend(item.parts)
        else:
            rows.append(item)
        ranges.append((begin, len(rows)))
    return rows, ranges


def infer_windowed(
    probabilities: Callable[[Sequence[Any]], np.ndarray], batch: Sequence[Any]
) -> np.ndarray:
    """Probabilities of a batch holding windowed texts: all windows run through
    ``probabilities`` (the model's batch planner), then each text's are aggregated."""
    rows, ranges = flatten(batch)
    probs = probabilities(rows)
    out = np.empty((len(batch), probs.shape[1]))
    for index, (begin, end) in enumerate(ranges):
        item = batch[index]
        if isinstance(item, Windowed):
            lengths = np.array([len(p) for p in item.parts], dtype=np.float64)
            out[index] = AGGREGATIONS[AGGREGATION](probs[begin:end], lengths)
        else:
            out[index] = probs[begin]
    return out


def has_windows(batch: Sequence[Any]) -> bool:
    return any(isinstance(item, Windowed) for item in batch)


def _weighted(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out: np.ndarray = (probs * weights[:, None]).sum(axis=0) / weights.sum()
    return out


def _mean(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return _weighted(probs, np.ones(len(probs)))


def _length_weighted(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return _weighted(probs, lengths)


def _most_confident(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    row: np.ndarray = probs[int(probs.max(axis=1).argmax())]
    return row


def _later_weighted(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return _weighted(probs, np.arange(1, len(probs) + 1, dtype=np.float64))


def _log_mean(probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    logs = np.log(np.clip(probs, 1e-12, 1.0)).mean(axis=0)
    exp = np.exp(logs - logs.max())
    out: np.ndarray = exp / exp.sum()
    return out


Aggregation = Callable[[np.ndarray, np.ndarray], np.ndarray]
AGGREGATIONS: dict[str, Aggregation] = {
    "mean": _mean,
    "length": _length_weighted,
    "confident": _most_confident,
    "later": _later_weighted,
    "logmean": _log_mean,
}
# The most confident window answers for the text: a long review is mostly neutral
# description with its verdict in a few clauses, and averaging dilutes the verdict. Chosen
# on the dev splits by bench/longtext.py over mean, length-weighted, later-weighted and
# log-mean (docs/model.md, "Long texts").
AGGREGATION = "confident"
