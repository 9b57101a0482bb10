"""Cutting texts into model calls: length-sorted batches, split where padding costs more
than a call.

On a CPU a transformer's time is roughly proportional to padded tokens (batch size ×
longest text) plus a fixed cost per call. :func:`plan_batches` sorts texts by length and
cuts them under a size and a padded-token budget; :func:`split_for_padding` splits a cut
further where the padding would cost more than another call; and
:func:`measure_batch_overhead` measures that fixed cost, in tokens, for a model. The
engine (``predict``) and the server's batcher both plan this way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interface import Model


def plan_batches(
    lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int
) -> list[list[int]]:
    """Group indices into length-sorted batches.

    Each batch holds at most ``max_batch_size`` items and at most ``max_batch_tokens``
    padded tokens (items × longest item). A single item longer than the budget still
    gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[index]  # ascending, so this is the batch's padded width
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * width > max_batch_tokens
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def split_for_padding(lengths: Sequence[int], overhead_tokens: float) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into runs ``[begin, end)`` of least total cost.

    A run costs its padded tokens (items x longest) plus ``overhead_tokens``, the fixed
    cost of one more model call expressed in tokens. On a CPU a transformer's time is
    roughly proportional to padded tokens, so one long review must not make fifteen
    short ones pay for its length. Exact dynamic programme, O(n^2) for n <= batch size;
    skipped when the padding in one run costs less than a call.
    """
    n = len(lengths)
    if n <= 1 or n * lengths[-1] - sum(lengths) <= overhead_tokens:
        return [(0, n)] if n else []
    best = [0.0] + [math.inf] * n
    start = [0] * (n + 1)
    for end in range(1, n + 1):
        width = lengths[end - 1]
        for begin in range(end):
            cost = best[begin] + (end - begin) * width + overhead_tokens
            if cost < best[end]:
                best[end] = cost
                start[end] = begin
    runs = []
    end = n
    while end > 0:
        runs.append((start[end], end))
        end = start[end]
    return runs[::-1]


def measure_batch_overhead(
    model: Model,
    overhead_s: float = 1e-4,
    budget_s: float = 0.1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The fixed cost of one model call, in tokens of work (``inf`` if tokens are ~free).

    Times one short and one ~128-token text (after a warm-up call, the best of up to five
    calls each, fewer once ``budget_s`` is spent, so a large model does not delay start-up)
    and fits ``time = fixed + per_token * tokens``; ``overhead_s`` adds the batcher's own
    cost per call (thread hand-off, padding, results).
    """
    short = model.tokenize(["好"])
    # ~128 tokens, but within the model's limit: with truncation off a longer probe would
    # raise TextTooLongError instead of measuring anything.
    medium = model.tokenize(["好" * max(1, min(126, model.max_length // 2))])

    def best_time(batch: Sequence[Any]) -> float:
        model.infer(batch)  # untimed: the first call with a new shape allocates
        times: list[float] = []
        while len(times) < 5 and (len(times) < 2 or sum(times) < budget_s):
            begin = clock()
            model.infer(batch)
            times.append(clock() - begin)
        return min(times)

    t_short, t_medium = best_time(short), best_time(medium)
    extra_tokens = len(medium[0]) - len(short[0])
    per_token = (t_medium - t_short) / extra_tokens if extra_tokens > 0 else 0.0
    if per_token <= 0:
        return math.inf
    fixed = max(0.0, t_short - per_token * len(short[0])) + overhead_s
    return max(1.0, fixed / per_token)
