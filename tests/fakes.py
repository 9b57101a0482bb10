"""Models for tests to serve through ``create_app(settings, model)``: a real classifier
wrapped so a test can slow it down or make it fail, with no hook in production code.

:class:`ModelWrapper` forwards every member of :class:`qinggan.interface.Model` to the
wrapped model; subclasses override what they change (usually ``infer``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from qinggan.engine import Prediction
from qinggan.interface import Model


class ModelWrapper:
    """A :class:`~qinggan.interface.Model` that forwards everything to ``model``."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.labels = model.labels
        self.display_labels = model.display_labels
        self.max_length = model.max_length

    @property
    def name(self) -> str:
        return self._model.name

    def tokenize(self, texts: Sequence[str]) -> Sequence[Any]:
        return self._model.tokenize(texts)

    def infer(self, batch: Sequence[Any]) -> np.ndarray:
        return self._model.infer(batch)

    def to_predictions(self, probs: np.ndarray, batch: Sequence[Any]) -> list[Prediction]:
        return self._model.to_predictions(probs, batch)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self._model.predict(texts)

    @property
    def batch_overhead_tokens(self) -> float:
        return self._model.batch_overhead_tokens

    def info(self) -> dict[str, Any]:
        return self._model.info()

    def __call__(self, text: str) -> Prediction:
        return self.predict([text])[0]


class SlowModel(ModelWrapper):
    """Sleeps ``delay_s`` before every model call, so concurrent requests queue up."""

    def __init__(self, model: Model, delay_s: float) -> None:
        super().__init__(model)
        self.delay_s = delay_s

    def infer(self, batch: Sequence[Any]) -> np.ndarray:
        time.sleep(self.delay_s)
        return self._model.infer(batch)
