"""The ``ngram`` built-in model: character 1-3-gram TF-IDF + logistic regression, as pure ONNX.

The text is split into characters by a Hugging Face ``tokenizer.json`` (lower-cased,
whitespace collapsed); scikit-learn learns the n-gram vocabulary, IDF weights and the
classifier *over those token ids*, so the exported graph sees exactly what training saw:

    input_ids -> TfIdfVectorizer (n-gram counts) -> [1 + log(tf)] -> × idf -> L2 norm -> linear

Everything is a standard ONNX operator that ONNX Runtime runs on the CPU, so the engine
serves it like any other bundle. It is tiny and very fast, and less accurate than the
transformer; the ``accurate``, ``balanced`` and ``fast`` ensembles combine the two.

Run: ``python -m qinggan.train.ngram DATA_DIR OUT_DIR`` (needs scikit-learn and onnx).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, write_bundle
from ..errors import MissingExtraError, run_main
from .calibration import fit_temperature
from .data import Example, read_split

PAD, UNK = "[PAD]", "[UNK]"
LABELS = ["Negative", "Positive"]


def build_tokenizer(texts: Sequence[str], min_count: int = 2):  # type: ignore[no-untyped-def]
    """A character-level WordLevel tokenizer over characters seen ``min_count`` times."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(normalizer.normalize_str(text))
    chars = sorted(c for c, n in counts.items() if n >= min_count)
    vocab = {PAD: 0, UNK: 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return tokenizer


def ngrams(ids: Sequence[int], n_max: int = 3) -> list[tuple[int, ...]]:
    """Every contiguous 1..n_max-gram of ``ids`` (the analyzer scikit-learn sees)."""
    return [tuple(ids[i : i + n]) for n in range(1, n_max + 1) for i in range(len(ids) - n + 1)]


def ngram_pool(vocabulary: dict[tuple[int, ...], int]) -> dict[str, Any]:
    """``TfIdfVectorizer``'s n-gram pool: grams by order (1, 2, 3), each with its column."""
    by_order: dict[int, list[tuple[tuple[int, ...], int]]] = {1: [], 2: [], 3: []}
    for gram, column in vocabulary.items():
        by_order[len(gram)].append((gram, column))
    pool: list[int] = []
    indexes: list[int] = []
    starts: list[int] = []
    for order in (1, 2, 3):
        starts.append(len(pool))
        for gram, column in sorted(by_order[order]):
            pool.extend(gram)
            indexes.append(column)
    return dict(
        min_gram_length=1,
        max_gram_length=3,
        max_skip_count=0,
        ngram_counts=starts,
        ngram_indexes=indexes,
        pool_int64s=pool,
    )


def tfidf_nodes(pool: dict[str, Any], idf: np.ndarray, sublinear: bool) -> list[Any]:
    """input_ids -> ``tfidf`` (n-gram counts, sublinear or plain TF, times idf)."""
    from onnx import helper

    if sublinear:
        # for integer counts, 1 + log(tf) where tf > 0 (else 0) is log(max(tf, 1)) + min(tf, 1)
        return [
            helper.make_node("TfIdfVectorizer", ["input_ids"], ["tf"], mode="TF", **pool),
            helper.make_node("Max", ["tf", "one"], ["tf_at_least_one"]),
            helper.make_node("Log", ["tf_at_least_one"], ["log_tf"]),
            helper.make_node("Min", ["tf", "one"], ["present"]),
            helper.make_node("Add", ["log_tf", "present"], ["sublinear"]),
            helper.make_node("Mul", ["sublinear", "idf"], ["tfidf"]),
        ]
    pool_idf = [float(idf[column]) for column in pool["ngram_indexes"]]
    return [
        helper.make_node(
            "TfIdfVectorizer", ["input_ids"], ["tfidf"], mode="TFIDF", weights=pool_idf, **pool
        )
    ]


def _linear_nodes() -> list[Any]:
    """``tfidf`` -> L2 norm -> logistic regression -> ``logits`` ([0, z])."""
    from onnx import helper

    return [
        helper.make_node("ReduceL2", ["tfidf", "axis1"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "tiny"], ["safe_norm"]),
        # normalising after the matmul is a [B, 1] division instead of a [B, features] one
        helper.make_node("MatMul", ["tfidf", "coef"], ["raw"]),
        helper.make_node("Div", ["raw", "safe_norm"], ["score"]),
        helper.make_node("Add", ["score", "intercept"], ["z"]),
        # softmax([0, z]) = sigmoid(z): the logistic regression's probability
        helper.make_node("Mul", ["z", "select_positive"], ["logits"]),
    ]


def export_onnx(
    path: Path,
    vocabulary: dict[tuple[int, ...], int],
    idf: np.ndarray,
    coef: np.ndarray,
    intercept: float,
    *,
    sublinear: bool,
) -> None:
    """Write the TF-IDF + logistic-regression graph (input ``input_ids``, output ``logits``).

    With plain TF, ``TfIdfVectorizer`` emits tf × idf itself and only the norm and the
    matmul touch the wide feature matrix; sublinear TF (``1 + log(tf)``) costs four
    more passes over it.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = tfidf_nodes(ngram_pool(vocabulary), idf, sublinear) + _linear_nodes()
    initializers = [
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "tiny"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(idf.astype(np.float32), "idf"),
        numpy_helper.from_array(coef.astype(np.float32).reshape(-1, 1), "coef"),
        numpy_helper.from_array(np.array([intercept], dtype=np.float32), "intercept"),
        numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "select_positive"),
    ]
    if not sublinear:  # unused constants would only make ORT warn
        initializers = [i for i in initializers if i.name not in ("one", "idf")]
    graph = helper.make_graph(
        nodes,
        "qinggan_char_ngram_lr",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_parity(
    out: Path, max_length: int, rows: list[Example], reference: np.ndarray
) -> dict[str, Any]:
    """Compare the exported graph's decision values with scikit-learn's on ``rows``."""
    from ..engine import create_session
    from ..tokenization import TextEncoder

    encoder = TextEncoder(out / "tokenizer.json", max_length)
    session = create_session(out / "model.onnx", 1)
    encoded = encoder.encode([r.text for r in rows])
    logits = np.concatenate(
        [
            session.run(None, {"input_ids": encoder.pad(encoded[i : i + 64])[0]})[0]
            for i in range(0, len(encoded), 64)
        ]
    )
    ours = logits[:, 1] - logits[:, 0]
    diff = float(np.abs(ours - reference).max()) if len(rows) else 0.0
    agreement = float(((ours >= 0) == (reference >= 0)).mean()) if len(rows) else 1.0
    print(
        f"parity on {len(rows)} dev texts: max |logit diff| {diff:.2e}, "
        f"label agreement {agreement:.4f}",
        flush=True,
    )
    if diff > 1e-4:
        raise RuntimeError(
            f"exported n-gram model disagrees with scikit-learn (max diff {diff:.2e})"
        )
    return {
        "reference": "scikit-learn decision_function",
        "texts": len(rows),
        "fp32_max_abs_logit_diff": diff,
        "label_agreement": agreement,
    }


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(((probs[:, 1] >= 0.5).astype(int) == labels).mean())


def _vectorizer(max_features: int, min_df: int, sublinear: bool) -> Any:
    """scikit-learn's TF-IDF over the n-grams of token ids (what the graph recomputes)."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:
        raise MissingExtraError("training the n-gram model", "train", "scikit-learn") from None
    return TfidfVectorizer(
        analyzer=ngrams,
        lowercase=False,
        min_df=min_df,
        max_features=max_features,
        sublinear_tf=sublinear,
        norm="l2",
        dtype=np.float32,
    )


def _source(sublinear: bool) -> dict[str, str]:
    return {
        "kind": "trained",
        "architecture": f"char 1-3-gram TF-IDF ({'sublinear' if sublinear else 'raw'} tf, "
        "l2) + logistic regression",
        "data": "../shared/data train splits (all sources)",
    }


def _pick_c(
    x_train: Any,
    y_train: np.ndarray,
    x_dev: Any,
    y_dev: np.ndarray,
    c_grid: Sequence[float],
    seed: int,
) -> tuple[float, float, Any]:
    """Fit one logistic regression per C; the best on dev: (accuracy, C, classifier)."""
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, float, Any] | None = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000, solver="liblinear", random_state=seed)
        clf.fit(x_train, y_train)
        acc = _accuracy(clf.predict_proba(x_dev), y_dev)
        print(f"C={c:g}: dev accuracy {acc:.4f}", flush=True)
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    assert best is not None
    return best


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    max_features: int = 200_000,
    min_df: int = 2,
    c_grid: Sequence[float] = (2.0, 4.0, 8.0, 16.0),
    max_length: int = 512,
    sublinear: bool = True,
    seed: int = 13,
) -> Bundle:
    """Train on every ``train`` split, pick C on ``dev``, export the bundle to ``out_dir``."""
    vectorizer = _vectorizer(max_features, min_df, sublinear)  # fails early without sklearn
    started = time.perf_counter()
    train_rows, dev_rows = read_split(data_dir, "train"), read_split(data_dir, "dev")
    tokenizer = build_tokenizer([e.text for e in train_rows])
    tokenizer.enable_truncation(max_length=max_length)

    def encode(rows: list[Example]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch([r.text for r in rows])]

    x_train = vectorizer.fit_transform(encode(train_rows))
    x_dev = vectorizer.transform(encode(dev_rows))
    y_train = np.array([e.label for e in train_rows])
    y_dev = np.array([e.label for e in dev_rows])
    dev_acc, c_best, clf = _pick_c(x_train, y_train, x_dev, y_dev, c_grid, seed)
    z_dev = clf.decision_function(x_dev)
    temperature = round(fit_temperature(np.stack([np.zeros_like(z_dev), z_dev], 1), y_dev), 4)
    vocabulary = {gram: int(col) for gram, col in vectorizer.vocabulary_.items()}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.no_truncation()
    tokenizer.save(str(out / "tokenizer.json"))
    export_onnx(
        out / "model.onnx",
        vocabulary,
        vectorizer.idf_,
        clf.coef_[0],
        float(clf.intercept_[0]),
        sublinear=sublinear,
    )
    parity = check_parity(out, max_length, dev_rows[:2000], clf.decision_function(x_dev[:2000]))
    return write_bundle(
        out,
        name="qinggan-ngram",
        labels=LABELS,
        models={"fp32": "model.onnx"},
        max_length=max_length,
        inputs=("input_ids",),
        temperature=temperature,
        parity=parity,
        source=_source(sublinear),
        training={
            "script": "python -m qinggan.train.ngram DATA_DIR OUT_DIR",
            "seed": seed,
            "max_features": max_features,
            "min_df": min_df,
            "C": c_best,
            "sublinear_tf": sublinear,
            "c_grid": list(c_grid),
            "train_rows": len(train_rows),
            "dev_rows": len(dev_rows),
            "vocab_chars": tokenizer.get_vocab_size(),
            "features": len(vocabulary),
            "dev_accuracy": round(dev_acc, 4),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--max-features", type=int, default=200_000)
    parser.add_argument("--min-df", type=int, default=2)
    parser.add_argument("--raw-tf", action="store_true", help="plain instead of sublinear TF")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    bundle = train(
        args.data_dir,
        args.out_dir,
        max_features=args.max_features,
        min_df=args.min_df,
        sublinear=not args.raw_tf,
        seed=args.seed,
    )
    print(json.dumps(bundle.manifest.training, indent=2))


if __name__ == "__main__":
    run_main(main)
