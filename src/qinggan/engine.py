"""The inference engine: a bundle, its tokenizer and one ONNX Runtime session.

``qinggan.load()`` returns a :class:`Classifier`. ``predict`` tokenises, sorts texts by
length, cuts them into batches under a padded-token budget (so short texts are not
padded to long ones), runs each batch and returns results in input order.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, load_bundle, resolve_model
from .errors import BundleError
from .planning import measure_batch_overhead, plan_batches, split_for_padding
from .settings import LoadOptions, env_flag, env_long_texts
from .tokenization import TextEncoder
from .windows import has_windows, infer_windowed, window_long_texts

if TYPE_CHECKING:
    from .ensemble import Ensemble
    from .interface import Model

log = logging.getLogger(__name__)

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MIN_PADDING_TO_SPLIT = 64  # padded tokens in a batch below which predict never splits it


def default_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for one text."""

    label: str
    label_zh: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    truncated: bool = False
    windows: int = 1  # > 1: a long text read whole in this many windows (qinggan.windows)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "label_zh": self.label_zh,
            "confidence": round(self.confidence, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "truncated": self.truncated,
        }
        if self.windows > 1:
            out["windows"] = self.windows
        return out


def session_options(threads: int, spinning: bool | None = None) -> ort.SessionOptions:
    """ONNX Runtime CPU options: full graph optimisation, ``threads`` intra-op threads.

    ``spinning`` sets whether idle intra-op threads busy-wait for work (``None``:
    ``$QINGGAN_ORT_SPINNING`` if set, else ONNX Runtime's default, on).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if spinning is None:
        # QINGGAN_ORT_SPINNING=0 stops idle ORT threads busy-waiting (helps on shared/small CPUs).
        spinning = env_flag("ort_spinning")
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    return options


def create_session(
    path: str | os.PathLike[str], threads: int, spinning: bool | None = None
) -> ort.InferenceSession:
    """A CPU session with :func:`session_options`; a broken file is a :class:`BundleError`."""
    options = session_options(threads, spinning)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"cannot load ONNX model {os.fspath(path)!r}: {exc}") from None


class Predictor:
    """What every classifier shares: labels, the batching plan, predictions in input order.

    Subclasses provide :meth:`tokenize` and :meth:`infer`; with them a predictor is an
    :class:`~qinggan.interface.Model`, what the server's batcher and file scoring take.
    """

    bundle: Bundle
    variant: str
    threads: int

    def __init__(self, bundle: Bundle, options: LoadOptions) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.options = options
        self.truncate = options.truncate
        self.long_texts = options.long_texts or env_long_texts()
        self.batch_size = options.batch_size
        self.max_batch_tokens = options.max_batch_tokens
        self.labels: tuple[str, ...] = manifest.labels
        self.display_labels: tuple[str, ...] = manifest.display_labels
        self.max_length = manifest.max_length
        self._batch_overhead_tokens: float | None = None

    @property
    def name(self) -> str:
        return self.bundle.name

    def tokenize(self, texts: Sequence[str], *, windows: bool = True) -> Sequence[Any]:
        """Tokenise texts; :class:`TextTooLongError` if truncation is off and one is too long.

        Long texts become windows when ``long_texts`` is ``"window"`` and ``windows`` is true.
        """
        raise NotImplementedError

    def infer(self, batch: Sequence[Any]) -> np.ndarray:
        """Run one batch; returns calibrated probabilities, shape (n, labels)."""
        raise NotImplementedError

    def to_predictions(self, probs: np.ndarray, batch: Sequence[Any]) -> list[Prediction]:
        out = []
        for row, enc in zip(probs, batch, strict=True):
            best = int(row.argmax())
            out.append(
                Prediction(
                    label=self.labels[best],
                    label_zh=self.display_labels[best],
                    confidence=float(row[best]),
                    scores={label: float(p) for label, p in zip(self.labels, row, strict=True)},
                    truncated=enc.truncated,
                    windows=enc.windows,
                )
            )
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify ``texts``; results come back in input order."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; use clf(text) for one")
        if not texts:
            return []
        encoded = self.tokenize(texts)
        return self.to_predictions(self.probabilities(encoded), encoded)

    def probabilities(self, encoded: Sequence[Any]) -> np.ndarray:
        """Calibrated probabilities of tokenised texts, shape (n, labels), in input order.

        Texts run in length-sorted batches (:func:`~qinggan.planning.plan_batches`), each
        split where its padding would cost more than another model call
        (:func:`~qinggan.planning.split_for_padding`): a few texts of mixed lengths then
        cost what their own tokens cost, not the longest one's times their number.
        """
        probs = np.empty((len(encoded), len(self.labels)))
        lengths = [len(e) for e in encoded]
        for cut in plan_batches(lengths, self.batch_size, self.max_batch_tokens):
            widths = [lengths[i] for i in cut]
            padding = len(cut) * widths[-1] - sum(widths)
            runs = (  # a little padding is not worth measuring the call overhead for
                split_for_padding(widths, self.batch_overhead_tokens)
                if padding > MIN_PADDING_TO_SPLIT
                else [(0, len(cut))]
            )
            for begin, end in runs:
                indices = cut[begin:end]
                probs[indices] = self.infer([encoded[i] for i in indices])
        return probs

    @property
    def batch_overhead_tokens(self) -> float:
        """The fixed cost of one model call, in tokens of work (``inf``: tokens are ~free);
        measured on first use (:func:`~qinggan.planning.measure_batch_overhead`)."""
        if self._batch_overhead_tokens is None:
            self._batch_overhead_tokens = measure_batch_overhead(self)
        return self._batch_overhead_tokens

    def __call__(self, text: str) -> Prediction:
        return self.predict([text])[0]

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "name": m.name,
            "variant": self.variant,
            "sha256": self.bundle.sha256(self.variant),
            "labels": list(m.labels),
            "display_labels": list(m.display_labels),
            "max_length": m.max_length,
            "truncate": self.truncate,
            "long_texts": self.long_texts,
            "threads": self.threads,
            "source": m.source,
            "metrics": m.metrics,
        }


class Classifier(Predictor):
    """A bundle's tokenizer and one ONNX Runtime session (thread-safe)."""

    def __init__(self, bundle: Bundle, options: LoadOptions | None = None) -> None:
        options = options or LoadOptions()
        super().__init__(bundle, options)
        manifest = bundle.manifest
        self.variant = options.variant or manifest.preferred_variant
        self.threads = options.threads or default_threads()
        verify = options.verify
        # With ``verify``, the files this variant reads are hashed in a thread while the
        # tokenizer and the session load (hashlib and ONNX Runtime both release the GIL).
        with ThreadPoolExecutor(max_workers=1) as pool:
            check = pool.submit(bundle.verify, bundle.files_for(self.variant)) if verify else None
            try:
                self.encoder = TextEncoder(
                    bundle.tokenizer_path, manifest.max_length, manifest.text_prefix
                )
                self.session = create_session(
                    bundle.model_path(self.variant), self.threads, options.spinning
                )
            except Exception:
                if check is not None:
                    check.result()  # a checksum mismatch explains a broken file best
                raise
            if check is not None:
                check.result()
        self._input_names = self._check_graph()
        self._temperature = float(manifest.temperature)
        self.predict(["warm-up 预热"])  # fails early on a graph/label mismatch

    def _check_graph(self) -> tuple[str, ...]:
        names = tuple(i.name for i in self.session.get_inputs())
        unknown = [n for n in names if n not in KNOWN_INPUTS]
        if "input_ids" not in names or unknown:
            raise BundleError(
                f"bundle {self.name!r}: model inputs {list(names)} are not supported; "
                f"expected input_ids plus optionally {list(KNOWN_INPUTS[1:])}"
            )
        outputs = self.session.get_outputs()
        width = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(width, int) and width != len(self.labels):
            raise BundleError(
                f"bundle {self.name!r}: the model has {width} outputs but the manifest "
                f"names {len(self.labels)} labels"
            )
        return names

    def tokenize(self, texts: Sequence[str], *, windows: bool = True) -> Sequence[Any]:
        encoded = self.encoder.encode(texts, truncate=self.truncate)
        if windows and self.long_texts == "window":  # long texts become qinggan.windows.Windowed
            return window_long_texts(self.encoder, texts, encoded)
        return encoded

    def infer(self, batch: Sequence[Any]) -> np.ndarray:
        if has_windows(batch):  # the windows go through the batch planner, then aggregate
            return infer_windowed(self.probabilities, batch)
        ids, mask = self.encoder.pad(batch)
        feeds = {"input_ids": ids}
        if "attention_mask" in self._input_names:
            feeds["attention_mask"] = mask
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        logits = self.session.run(None, feeds)[0]
        if logits.ndim != 2 or logits.shape != (len(batch), len(self.labels)):
            raise BundleError(
                f"bundle {self.name!r}: model returned shape {list(logits.shape)}, expected "
                f"[{len(batch)}, {len(self.labels)}] for {len(self.labels)} labels"
            )
        return softmax(logits.astype(np.float64) / self._temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits along the last axis (shifted by the max: no overflow)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probs: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probs


def load(model: str | os.PathLike[str] | None = None, **options: Any) -> Predictor:
    """Load a classifier: a :class:`Classifier`, or an :class:`~qinggan.ensemble.Ensemble`
    for an ensemble bundle.

    ``model`` is a bundle directory or a built-in name (``accurate``, ``fast``, ...); ``None``
    picks ``$QINGGAN_MODEL`` or the default built-in model. The keyword arguments are the
    fields of :class:`~qinggan.settings.LoadOptions` (``variant``, ``threads``,
    ``truncate``, ``verify``, ``batch_size``, ``max_batch_tokens``, ``spinning``,
    ``long_texts``), with its defaults and meanings: ``long_texts="window"`` (the default)
    reads texts over the model's ``max_length`` tokens whole, in overlapping windows whose
    answers are aggregated (:mod:`qinggan.windows`), ``"truncate"`` cuts them;
    ``truncate=False`` makes over-long texts raise
    :class:`~qinggan.errors.TextTooLongError` instead; ``verify`` checks the sha256 of
    every file the chosen variant reads (not the variants it leaves unused).
    """
    return load_with(model, LoadOptions(**options))


def load_with(model: str | os.PathLike[str] | None, options: LoadOptions) -> Predictor:
    """:func:`load` with its options already gathered (``Settings.load_model``)."""
    bundle = load_bundle(resolve_model(model), verify=False)  # files: checked below
    kind: type[Classifier] | type[Ensemble] = Classifier
    if bundle.manifest.members:
        from .ensemble import Ensemble

        kind = Ensemble
    return kind(bundle, options)


if TYPE_CHECKING:  # mypy checks here that a Classifier is the one model interface

    def _is_a_model(classifier: Classifier) -> Model:
        return classifier
