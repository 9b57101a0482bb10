"""``qinggan eval``: accuracy, macro-F1, confusion matrix and calibration of a bundle.

Reads labelled CSV/JSONL files (``text,label``; label 0 = Negative, 1 = Positive) or a
data directory (expanded to its ``*/test.csv.gz``, one row per source), scores them with
the serving engine, optionally side by side with SnowNLP, and writes a rich table, JSON,
Markdown and a reliability-diagram PNG. Runs on the serving install (no torch);
matplotlib and snownlp are optional (extra ``eval``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import MissingExtraError, QingganError
from .train.data import Example, read_labelled

if TYPE_CHECKING:
    from .engine import Predictor

ECE_BINS = 15
BASELINES = ("snownlp",)


@dataclass
class Metrics:
    """Binary-classification scores for one set of texts."""

    n: int
    accuracy: float
    macro_f1: float
    confusion: list[list[int]]  # rows: true label (neg, pos); columns: predicted
    ece: float | None = None
    nll: float | None = None
    reliability: list[dict[str, float]] = field(default_factory=list)


def macro_f1(labels: np.ndarray, preds: np.ndarray, classes: int = 2) -> float:
    scores = []
    for cls in range(classes):
        tp = int(((preds == cls) & (labels == cls)).sum())
        fp = int(((preds == cls) & (labels != cls)).sum())
        fn = int(((preds != cls) & (labels == cls)).sum())
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def reliability_bins(
    labels: np.ndarray, prob_pos: np.ndarray, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of the predicted class's confidence, and per-bin stats."""
    preds = (prob_pos >= 0.5).astype(np.int64)
    confidence = np.where(preds == 1, prob_pos, 1.0 - prob_pos)
    correct = (preds == labels).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if not count:
            continue
        conf, acc = float(confidence[members].mean()), float(correct[members].mean())
        ece += count / len(labels) * abs(conf - acc)
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                      "confidence": conf, "accuracy": acc})  # fmt: skip
    return float(ece), table


def compute_metrics(
    labels: Sequence[int], prob_pos: Sequence[float], *, calibrated: bool = True
) -> Metrics:
    """Metrics from gold labels and P(positive); ``calibrated=False`` skips ECE/NLL."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(prob_pos, dtype=np.float64)
    if len(y) == 0:
        raise QingganError("no texts to evaluate")
    preds = (p >= 0.5).astype(np.int64)
    confusion = [[int(((y == t) & (preds == q)).sum()) for q in (0, 1)] for t in (0, 1)]
    metrics = Metrics(len(y), float((preds == y).mean()), macro_f1(y, preds), confusion)
    if calibrated:
        metrics.ece, metrics.reliability = reliability_bins(y, p)
        eps = 1e-12
        metrics.nll = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return metrics


def probs_metrics(labels: Sequence[int] | np.ndarray, probs: np.ndarray) -> Metrics:
    """Metrics of any number of labels from gold label indexes and ``[n, labels]``
    probabilities: N x N confusion, macro-F1 over every label, ECE of the predicted label's
    confidence (15 bins from 1/N to 1; for two labels the same as :func:`compute_metrics`)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        raise QingganError("no texts to evaluate")
    k = p.shape[1]
    preds = p.argmax(axis=1)
    confusion = [[int(((y == t) & (preds == q)).sum()) for q in range(k)] for t in range(k)]
    metrics = Metrics(len(y), float((preds == y).mean()), macro_f1(y, preds, k), confusion)
    confidence = p.max(axis=1)
    correct = (preds == y).astype(np.float64)
    edges = np.linspace(1.0 / k, 1.0, ECE_BINS + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        members = index == b
        count = int(members.sum())
        if not count:
            continue
        conf, acc = float(confidence[members].mean()), float(correct[members].mean())
        ece += count / len(y) * abs(conf - acc)
        metrics.reliability.append(
            {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
             "confidence": conf, "accuracy": acc}
        )  # fmt: skip
    metrics.ece = float(ece)
    metrics.nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))
    return metrics


def expand_inputs(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """``(name, file)`` pairs: a directory gives its ``*/test.csv.gz`` (named by source)."""
    out: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*/test.csv.gz"))
            if not found:
                raise QingganError(f"{path} is a directory without */test.csv.gz files")
            out.extend((f.parent.name, f) for f in found)
        elif path.is_file():
            out.append((path.name.split(".")[0], path))
        else:
            raise QingganError(f"{str(path)!r} is neither a file nor a directory")
    return out


def snownlp_scorer() -> Callable[[list[str]], np.ndarray]:
    """P(positive) from SnowNLP's bundled Bayes model."""
    try:
        from snownlp import SnowNLP
    except ImportError:
        raise MissingExtraError("--baseline snownlp", "eval", "snownlp") from None

    def score(texts: list[str]) -> np.ndarray:
        return np.array([SnowNLP(t).sentiments if t.strip() else 0.5 for t in texts])

    return score


@dataclass
class Report:
    model: str
    variant: str
    rows: dict[str, dict[str, object]]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate_examples(
    clf: Predictor, sets: dict[str, list[Example]], baseline: str | None = None
) -> Report:
    """Score every named set (plus an ``all`` row when there are several)."""
    started = time.perf_counter()
    if len(clf.labels) != 2:
        return evaluate_labels(clf, sets, started)
    positive = list(clf.labels).index("Positive") if "Positive" in clf.labels else 1
    base_fn = None
    if baseline:
        if baseline not in BASELINES:
            raise QingganError(f"unknown baseline {baseline!r} (known: {', '.join(BASELINES)})")
        base_fn = snownlp_scorer()
    rows: dict[str, dict[str, object]] = {}
    all_labels: list[int] = []
    all_probs: list[float] = []
    all_base: list[float] = []
    for name, examples in sets.items():
        texts = [e.text for e in examples]
        labels = [e.label for e in examples]
        probs = [pred.scores[clf.labels[positive]] for pred in clf.predict(texts)]
        row: dict[str, object] = {"model": asdict(compute_metrics(labels, probs))}
        if base_fn is not None:
            base = base_fn(texts)
            row[baseline] = asdict(compute_metrics(labels, base.tolist()))  # type: ignore[index]
            all_base.extend(base.tolist())
        rows[name] = row
        all_labels.extend(labels)
        all_probs.extend(probs)
    if len(sets) > 1:
        row = {"model": asdict(compute_metrics(all_labels, all_probs))}
        if base_fn is not None:
            row[baseline] = asdict(compute_metrics(all_labels, all_base))  # type: ignore[index]
        rows["all"] = row
    return Report(clf.name, clf.variant, rows, time.perf_counter() - started)


def evaluate_labels(clf, sets: dict[str, list[Example]], started: float) -> Report:  # type: ignore[no-untyped-def]
    """Any number of labels (``Example.label`` indexes ``clf.labels``): N x N confusion,
    macro-F1 over every label, ECE of the predicted label's confidence."""
    rows: dict[str, dict[str, object]] = {}
    all_labels: list[int] = []
    all_probs: list[np.ndarray] = []
    for name, examples in sets.items():
        preds = clf.predict([e.text for e in examples])
        probs = np.array([[p.scores[label] for label in clf.labels] for p in preds])
        labels = [e.label for e in examples]
        rows[name] = {"model": asdict(probs_metrics(labels, probs))}
        all_labels.extend(labels)
        all_probs.append(probs)
    if len(sets) > 1:
        rows["all"] = {"model": asdict(probs_metrics(all_labels, np.concatenate(all_probs)))}
    return Report(clf.name, clf.variant, rows, time.perf_counter() - started)


def read_examples(path: Path, name: str, labels: Sequence[str]) -> list[Example]:
    """A labelled file for a model whose labels are not the two sentiment ones."""
    from .adapt.data import label_indexes, read_pairs

    pairs = label_indexes(read_pairs(path), labels, str(path))
    return [Example(text, label, name) for text, label in pairs]


def _pct(value: object) -> str:
    return f"{100 * float(value):.2f}" if value is not None else "-"  # type: ignore[arg-type]


def table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    baseline = next((k for r in report.rows.values() for k in r if k != "model"), None)
    header = ["set", "n", "acc %", "macro-F1 %", "ECE %", "confusion"]
    if baseline:
        header += [f"{baseline} acc %", f"{baseline} macro-F1 %"]
    body = []
    for name, row in report.rows.items():
        m = row["model"]
        line = [name, str(m["n"]), _pct(m["accuracy"]), _pct(m["macro_f1"]), _pct(m["ece"]),  # type: ignore[index]
                json.dumps(m["confusion"])]  # type: ignore[index]  # fmt: skip
        if baseline:
            b = row[baseline]
            line += [_pct(b["accuracy"]), _pct(b["macro_f1"])]  # type: ignore[index]
        body.append(line)
    return header, body


def to_markdown(report: Report) -> str:
    header, body = table_rows(report)
    lines = [
        f"# Evaluation of `{report.model}` ({report.variant})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += [
        "",
        "confusion: rows are the true labels, columns the predicted ones, both in the "
        "model's label order (two labels: [[neg → neg, → pos], [pos → neg, → pos]]); "
        f"ECE: {ECE_BINS} equal-width bins of the predicted label's confidence.",
        "",
    ]
    return "\n".join(lines)


def plot_reliability(report: Report, path: str | Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("--plot", "eval", "matplotlib") from None
    key = "all" if "all" in report.rows else next(iter(report.rows))
    model_row = cast(dict[str, Any], report.rows[key]["model"])
    bins = model_row["reliability"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0.5, 1.0], [0.5, 1.0], "--", color="grey", label="perfect calibration")
    ax.plot(
        [b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=report.model
    )
    ax.set_xlabel("confidence of the predicted label")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability ({key}), ECE {100 * float(model_row['ece']):.2f}%")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def run_eval(
    model: str | None,
    data: Sequence[str],
    *,
    baseline: str | None = None,
    json_out: str | None = None,
    markdown_out: str | None = None,
    plot: str | None = None,
    variant: str | None = None,
    threads: int | None = None,
    limit: int | None = None,
    as_json: bool = False,
    long_texts: str | None = None,
) -> Report:
    """The ``qinggan eval`` command: score, print a table (``as_json``: the JSON report),
    write the requested files."""
    from rich.console import Console
    from rich.table import Table

    from .engine import load

    inputs = expand_inputs(data)
    clf = load(model, variant=variant, threads=threads, long_texts=long_texts)
    sets: dict[str, list[Example]] = {}
    for name, path in inputs:
        if len(clf.labels) == 2:
            examples = read_labelled(path, name)
        else:
            examples = read_examples(path, name, clf.labels)
        sets[name if name not in sets else str(path)] = examples[:limit] if limit else examples
    report = evaluate_examples(clf, sets, baseline)
    as_text = json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if as_json:
        sys.stdout.write(as_text)
    else:
        header, body = table_rows(report)
        table = Table(title=f"{report.model} ({report.variant})")
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i in (0, 5) else "right")
        for row in body:
            table.add_row(*row)
        Console().print(table)
    if json_out:
        Path(json_out).write_text(as_text, encoding="utf-8")
    if markdown_out:
        Path(markdown_out).write_text(to_markdown(report), encoding="utf-8")
    if plot:
        plot_reliability(report, plot)
    return report
