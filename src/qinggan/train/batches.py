"""Texts into padded batches for training and evaluation, through the serving path.

Training tokenises with :class:`qinggan.tokenization.TextEncoder` (from the same
``tokenizer.json`` the bundle ships, with the same prefix, truncation and pad id) and
cuts evaluation batches with :func:`qinggan.planning.plan_batches`, so what the model
learns from and what the engine feeds it cannot drift apart.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..planning import plan_batches
from ..tokenization import Encoded, TextEncoder

TEXT_PREFIX = "query: "  # e5's prefix for a text that is not a search query's answer
EVAL_BATCH_SIZE = 64

Batch = tuple[np.ndarray, np.ndarray]  # input_ids, attention_mask


def text_encoder(tokenizer_path: Path, max_length: int) -> TextEncoder:
    """The serving path's encoder for a trained bundle's tokenizer."""
    return TextEncoder(tokenizer_path, max_length, TEXT_PREFIX)


def eval_batches(
    encoder: TextEncoder, encoded: Sequence[Encoded], batch_size: int = EVAL_BATCH_SIZE
) -> tuple[list[int], list[Batch]]:
    """Length-sorted padded batches of ``encoded`` and the order of texts they follow."""
    plan = plan_batches([len(e) for e in encoded], batch_size, sys.maxsize)
    order = [index for batch in plan for index in batch]
    return order, [encoder.pad([encoded[i] for i in batch]) for batch in plan]


def length_bucketed_batches(
    lengths: list[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, then sort by length within windows of 50 batches, then shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
