"""Ensembles: several bundles whose calibrated probabilities are averaged with weights.

An ensemble bundle's manifest lists ``members`` (bundle directories relative to it); each
member keeps its own tokenizer and graph, so models of different kinds (a transformer
and a character n-gram model, say) can vote together. To the batcher and the CLI an
ensemble looks like any classifier: ``tokenize`` returns one :class:`EnsembleEncoded`
per text holding every member's tokens, and ``infer`` runs every member on the batch.

An optional manifest ``gate`` makes the ensemble a cascade: one member runs first and
answers alone the texts it is at least ``confidence`` sure of; only the others go
through every member (``qinggan.train.blend --gate`` picks the threshold on dev).
``predict`` lets each member batch what it is given by its own token lengths, so the few
texts a cascade passes on are batched together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import Bundle
from .engine import Classifier, Predictor, default_threads, softmax
from .errors import BundleError
from .settings import LoadOptions
from .tokenization import Encoded
from .windows import Windowed


@dataclass(frozen=True, slots=True)
class EnsembleEncoded:
    """One text as each member tokenised it."""

    parts: tuple[Encoded | Windowed, ...]
    truncated: bool

    def __len__(self) -> int:  # the batch budget follows the longest member encoding
        return max(len(p) for p in self.parts)

    @property
    def windows(self) -> int:  # each member windows a long text by its own max_length
        return max(p.windows for p in self.parts)


class Ensemble(Predictor):
    """Weighted average of member classifiers' probabilities.

    Averaging pulls probabilities towards the middle, so the ensemble's own manifest
    ``temperature`` (fitted on dev) rescales the averaged log-probabilities.
    """

    def __init__(self, bundle: Bundle, options: LoadOptions | None = None) -> None:
        options = options or LoadOptions()
        super().__init__(bundle, options)
        if options.verify:
            bundle.verify(bundle.files_for())
        self.threads = options.threads or default_threads()
        self.members: list[Classifier] = []
        for member in bundle.members:
            if member.manifest.labels != self.labels:
                raise BundleError(
                    f"ensemble {self.name!r}: member {member.name!r} has labels "
                    f"{list(member.manifest.labels)}, the ensemble {list(self.labels)}"
                )
            variant = options.variant if options.variant in member.manifest.models else None
            self.members.append(
                Classifier(
                    member,
                    dataclasses.replace(
                        options,
                        variant=variant,
                        threads=self.threads,
                        long_texts=self.long_texts,
                    ),
                )
            )
        weights = np.array([float(m.get("weight", 1.0)) for m in bundle.manifest.members])
        self.weights = weights / weights.sum()
        self._temperature = float(bundle.manifest.temperature)
        gate = bundle.manifest.gate
        self.gate: tuple[int, float] | None = (
            (int(gate["member"]), float(gate["confidence"])) if gate else None
        )
        self.variant = "+".join(m.variant for m in self.members)

    def tokenize(self, texts: Sequence[str], *, windows: bool = True) -> list[EnsembleEncoded]:
        per_member = [m.tokenize(texts, windows=windows) for m in self.members]
        return [
            EnsembleEncoded(parts, any(p.truncated for p in parts))
            for parts in zip(*per_member, strict=True)
        ]

    def infer(self, batch: Sequence[EnsembleEncoded]) -> np.ndarray:
        """One batch as it comes (the server's micro-batches): every member runs on it."""
        return self._run(batch, planned=False)

    def probabilities(self, encoded: Sequence[EnsembleEncoded]) -> np.ndarray:
        """Many texts (``predict``): each member plans its own length-sorted batches over
        what it is given, so a cascade's other members see the unsure texts batched together
        instead of a few per batch of the gate member's."""
        return self._run(encoded, planned=True)

    def _run(self, encoded: Sequence[EnsembleEncoded], *, planned: bool) -> np.ndarray:
        if self.gate is None:
            return self._combine(encoded, planned=planned)
        # a cascade: the gate member answers what it is sure of; the rest get every member
        first, confidence = self.gate
        answer = self._member_probs(first, encoded, planned)
        unsure = np.flatnonzero(answer.max(axis=1) < confidence)
        if unsure.size:
            answer = answer.copy()
            answer[unsure] = self._combine(
                [encoded[i] for i in unsure.tolist()], {first: answer[unsure]}, planned=planned
            )
        return answer

    def _member_probs(
        self, index: int, encoded: Sequence[EnsembleEncoded], planned: bool
    ) -> np.ndarray:
        member, parts = self.members[index], [e.parts[index] for e in encoded]
        return member.probabilities(parts) if planned else member.infer(parts)

    def _combine(
        self,
        encoded: Sequence[EnsembleEncoded],
        known: dict[int, np.ndarray] | None = None,
        *,
        planned: bool,
    ) -> np.ndarray:
        """Every member's probabilities for ``encoded`` (reusing ``known`` ones), averaged."""
        known = known or {}
        probs = [
            known[i] if i in known else self._member_probs(i, encoded, planned)
            for i in range(len(self.members))
        ]
        return sharpen(mix(probs, self.weights), self._temperature)

    def info(self) -> dict[str, Any]:
        info = super().info()
        if self.gate is not None:
            info["gate"] = {"member": self.members[self.gate[0]].name, "confidence": self.gate[1]}
        info["members"] = [
            {"name": m.name, "variant": m.variant, "weight": round(float(w), 4)}
            for m, w in zip(self.members, self.weights, strict=True)
        ]
        return info


def mix(member_probs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted average of members' probabilities (weights normalised to sum to 1)."""
    weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    total = np.zeros_like(np.asarray(member_probs[0], dtype=np.float64))
    for probs, weight in zip(member_probs, weights, strict=True):
        total += weight * probs
    return total


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Divide the log-probabilities by ``temperature`` and renormalise (1.0: unchanged)."""
    if temperature == 1.0:
        return probs
    return softmax(np.log(np.clip(probs, 1e-12, 1.0)) / temperature)


if TYPE_CHECKING:  # mypy checks here that an Ensemble is the one model interface
    from .interface import Model

    def _is_a_model(ensemble: Ensemble) -> Model:
        return ensemble
