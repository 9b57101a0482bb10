"""A character n-gram member fitted on the user's rows (plus replayed review rows), for any
number of labels, exported as the same pure-ONNX graph as the built-in ``ngram`` model.

The tokenizer, the n-gram analyzer over its ids and the TF-IDF settings are the built-in
trainer's (:mod:`qinggan.train.ngram`), so the exported graph sees what scikit-learn saw;
only the linear layer differs: ``[features, labels]`` instead of one logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtraError

MAX_FEATURES = 200_000
MAX_LENGTH = 512


@dataclass
class NgramFit:
    """A fitted n-gram classifier: its tokenizer, vectorizer and linear layer."""

    tokenizer: Any
    vectorizer: Any
    coef: np.ndarray  # [features, labels]
    intercept: np.ndarray  # [labels]
    c: float

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        x = self.vectorizer.transform(encode(self.tokenizer, texts))
        logits: np.ndarray = np.asarray(x @ self.coef) + self.intercept
        return logits


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(list(texts))]


def _sklearn() -> tuple[Any, Any]:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingExtraError("qinggan adapt", "adapt", "scikit-learn") from None
    return TfidfVectorizer, LogisticRegression


def fit_ngram(
    texts: Sequence[str],
    labels: np.ndarray,
    weights: np.ndarray,
    n_labels: int,
    c: float,
    seed: int,
) -> NgramFit:
    """Fit the tokenizer, TF-IDF and a (multinomial) logistic regression on ``texts``."""
    from ..train.ngram import build_tokenizer, ngrams

    tfidf, logistic = _sklearn()
    tokenizer = build_tokenizer(texts, min_count=1)
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    vectorizer = tfidf(
        analyzer=ngrams, lowercase=False, min_df=1, max_features=MAX_FEATURES,
        sublinear_tf=True, norm="l2", dtype=np.float32,
    )  # fmt: skip
    x = vectorizer.fit_transform(encode(tokenizer, texts))
    solver = "liblinear" if n_labels == 2 else "lbfgs"
    clf = logistic(C=c, max_iter=2000, solver=solver, random_state=seed)
    clf.fit(x, labels, sample_weight=weights)
    coef, intercept = clf.coef_, clf.intercept_
    if n_labels == 2:  # one logit z -> (0, z): softmax gives the same probabilities
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, float(intercept[0])])
    full_coef = np.zeros((n_labels, coef.shape[1]))
    full_intercept = np.full(n_labels, -30.0)  # a label absent from the fit is never chosen
    for row, cls in enumerate(clf.classes_ if n_labels > 2 else range(2)):
        full_coef[int(cls)], full_intercept[int(cls)] = coef[row], intercept[row]
    tokenizer.no_truncation()
    return NgramFit(tokenizer, vectorizer, full_coef.T.copy(), full_intercept, c)


def export(fit: NgramFit, path: Path) -> None:
    """Write the TF-IDF + linear graph (input ``input_ids``, output ``logits``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..train.ngram import ngram_pool, tfidf_nodes

    n_labels = fit.coef.shape[1]
    pool = ngram_pool({gram: int(column) for gram, column in fit.vectorizer.vocabulary_.items()})
    nodes = [
        *tfidf_nodes(pool, fit.vectorizer.idf_, sublinear=True),
        helper.make_node("ReduceL2", ["tfidf", "axis1"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "tiny"], ["safe_norm"]),
        helper.make_node("MatMul", ["tfidf", "coef"], ["raw"]),
        helper.make_node("Div", ["raw", "safe_norm"], ["score"]),
        helper.make_node("Add", ["score", "intercept"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "tiny"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(fit.vectorizer.idf_.astype(np.float32), "idf"),
        numpy_helper.from_array(fit.coef.astype(np.float32), "coef"),
        numpy_helper.from_array(fit.intercept.astype(np.float32), "intercept"),
    ]
    graph = helper.make_graph(
        nodes,
        "qinggan_adapted_char_ngram",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
