"""How texts are cut into model calls: size and token budgets, splits for padding, the
measured cost of one call."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qinggan.planning import measure_batch_overhead, plan_batches, split_for_padding
from qinggan.tokenization import Encoded


@pytest.mark.parametrize(
    ("lengths", "size", "tokens", "expected"),
    [
        ([], 4, 100, []),
        ([5, 1, 3], 8, 1000, [[1, 2, 0]]),
        ([5, 1, 3, 2], 2, 1000, [[1, 3], [2, 0]]),
        ([10, 10, 10], 8, 20, [[0, 1], [2]]),
        ([500, 1], 8, 100, [[1], [0]]),  # an item over budget still gets its own batch
    ],
)
def test_plan_batches(lengths, size, tokens, expected) -> None:
    assert plan_batches(lengths, size, tokens) == expected


@given(st.lists(st.integers(1, 600), max_size=200), st.integers(1, 64), st.integers(1, 20000))
def test_plan_batches_properties(lengths: list[int], size: int, tokens: int) -> None:
    batches = plan_batches(lengths, size, tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= size
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= tokens


@pytest.mark.parametrize(
    ("lengths", "overhead", "runs"),
    [
        ([], 5.0, []),
        ([7], 5.0, [(0, 1)]),
        ([8, 8, 8, 8], 1.0, [(0, 4)]),  # no padding: never split
        ([5, 5, 5, 100], math.inf, [(0, 4)]),  # calls are dear: one batch
        ([5, 5, 5, 100], 10.0, [(0, 3), (3, 4)]),  # one long text gets its own call
        ([2, 3, 40, 41], 4.0, [(0, 2), (2, 4)]),
        ([10, 11, 12, 13], 7.0, [(0, 4)]),  # a little padding is cheaper than a call
    ],
)
def test_split_for_padding_minimises_padded_tokens_plus_calls(
    lengths: list[int], overhead: float, runs: list[tuple[int, int]]
) -> None:
    assert split_for_padding(lengths, overhead) == runs


class ClockedModel:
    """Each call costs ``fixed + per_token * tokens`` seconds on a fake clock."""

    max_length = 512  # the probe text stays within it

    def __init__(self, fixed: float, per_token: float) -> None:
        self.batches: list[list[int]] = []
        self.fixed, self.per_token, self.now = fixed, per_token, 0.0

    def infer(self, batch: Sequence[Encoded]) -> list[int]:
        self.now += self.fixed + self.per_token * sum(len(e) for e in batch)
        self.batches.append([len(e) for e in batch])
        return [len(e) for e in batch]

    def tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        return [Encoded(list(range(len(t))), False) for t in texts]


@pytest.mark.parametrize(
    ("fixed", "per_token", "calls"),
    [(1e-3, 1e-5, 12), (0.05, 1e-3, 6)],  # cheap calls: 1 + 5 per shape; costly: 1 + 2
)
def test_batch_overhead_is_fitted_within_a_time_budget(
    fixed: float, per_token: float, calls: int
) -> None:
    model = ClockedModel(fixed, per_token)
    clock = lambda: model.now  # noqa: E731
    tokens = measure_batch_overhead(model, overhead_s=0.0, clock=clock)  # type: ignore[arg-type]
    assert tokens == pytest.approx(fixed / per_token)
    assert len(model.batches) == calls
