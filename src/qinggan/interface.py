"""The model interface: what the server, the batcher, file scoring and the CLI need of a
classifier.

``engine.Classifier`` (one ONNX graph) and ``ensemble.Ensemble`` (weighted members or a
cascade) both satisfy :class:`Model`; so do the fakes that tests pass to
``server.create_app``. Code that takes a model is typed with this protocol and calls
these members only, never ``getattr`` probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .engine import Prediction


@runtime_checkable
class Model(Protocol):
    """A loaded classifier: tokenise, run batches, turn probabilities into predictions."""

    labels: tuple[str, ...]
    display_labels: tuple[str, ...]
    max_length: int

    @property
    def name(self) -> str:
        """The bundle's name (``accurate``, ``my-model``, ...)."""
        ...

    def tokenize(self, texts: Sequence[str]) -> Sequence[Any]:
        """Encode texts; each item has ``len()`` (its tokens), ``truncated`` and ``windows``
        (more than 1 for a long text read whole, :mod:`qinggan.windows`)."""
        ...

    def infer(self, batch: Sequence[Any]) -> np.ndarray:
        """Probabilities of one batch of encoded texts, shape (n, labels)."""
        ...

    def to_predictions(self, probs: np.ndarray, batch: Sequence[Any]) -> list[Prediction]:
        """One :class:`~qinggan.engine.Prediction` per row of ``probs``."""
        ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify texts in planned batches; results in input order."""
        ...

    @property
    def batch_overhead_tokens(self) -> float:
        """The fixed cost of one model call, in tokens of work (``inf``: tokens are ~free)."""
        ...

    def info(self) -> dict[str, Any]:
        """What ``/info`` and ``qinggan info`` show: name, variant, sha256, labels, ..."""
        ...
