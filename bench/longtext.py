"""Long reviews read whole (windows) against cut (truncate), and which aggregation to ship.

For each built-in model the texts it would cut (longer than a member's ``max_length``
tokens) are taken from ``*/dev.csv.gz`` and ``*/test.csv.gz``; each is scored cut and read
whole in windows with every aggregation of :data:`qinggan.windows.AGGREGATIONS`, in the
same run. The aggregation is chosen on dev (best accuracy summed over the models; ties go
to the earlier, simpler one) and reported on test.

Each member scores each distinct window once (a cache keyed by its token ids), so every
aggregation and every model that shares a member sees the same window probabilities.

    python bench/longtext.py [--data ../shared/data] [--models accurate,fast,balanced,ngram]

Writes ``bench/results/longtext.json`` and the table in docs/model.md (between the
``longtext`` markers; ``--render`` rewrites the table from the saved results).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DEFAULT_DATA  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "longtext.json"
MODEL_CARD = REPO / "docs" / "model.md"
BEGIN, END = "<!-- longtext:begin -->", "<!-- longtext:end -->"
LABELS = {"0": "Negative", "1": "Positive"}


def read_split(data: Path, split: str) -> list[tuple[str, str, str]]:
    """(source, text, label) of every ``*/<split>.csv.gz``."""
    rows = []
    for path in sorted(data.glob(f"*/{split}.csv.gz")):
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            rows += [(path.parent.name, r["text"], LABELS[r["label"]]) for r in csv.DictReader(fh)]
    if not rows:
        raise SystemExit(f"error: no */{split}.csv.gz under {data} (pass --data)")
    return rows


def classifiers(model: Any) -> list[Any]:
    """The model's ONNX classifiers: itself, or an ensemble's members."""
    return list(getattr(model, "members", [model]))


def cache_windows(model: Any, cache: dict[tuple[str, tuple[int, ...]], np.ndarray]) -> None:
    """Make each member score a given token sequence once (shared across models)."""
    from qinggan.windows import has_windows, infer_windowed

    for clf in classifiers(model):
        original = clf.infer

        def infer(batch: Sequence[Any], clf: Any = clf, original: Any = original) -> np.ndarray:
            if has_windows(batch):
                return infer_windowed(clf.probabilities, batch)
            keys = [(clf.name, tuple(e.ids)) for e in batch]
            missing = [i for i, k in enumerate(keys) if k not in cache]
            if missing:
                probs = original([batch[i] for i in missing])
                for i, row in zip(missing, probs, strict=True):
                    cache[keys[i]] = row
            return np.stack([cache[k] for k in keys])

        clf.infer = infer


def set_mode(model: Any, mode: str) -> None:
    model.long_texts = mode
    for clf in classifiers(model):
        clf.long_texts = mode


def score(model: Any, rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Accuracy of ``model`` on ``rows`` cut and windowed with each aggregation."""
    from qinggan import windows

    texts = [t for _, t, _ in rows]
    gold = [g for _, _, g in rows]
    out: dict[str, Any] = {"texts": len(rows)}
    set_mode(model, "truncate")
    out["truncate"] = accuracy(model.predict(texts), gold)
    set_mode(model, "window")
    chosen = windows.AGGREGATION
    try:
        for name in windows.AGGREGATIONS:
            windows.AGGREGATION = name
            predictions = model.predict(texts)
            out[name] = accuracy(predictions, gold)
        out["windows_mean"] = round(float(np.mean([p.windows for p in predictions])), 2)
        out["still_truncated"] = sum(p.truncated for p in predictions)
    finally:
        windows.AGGREGATION = chosen
    return out


def accuracy(predictions: Sequence[Any], gold: Sequence[str]) -> float:
    return round(
        100.0 * float(np.mean([p.label == g for p, g in zip(predictions, gold, strict=True)])), 2
    )


def long_rows(model: Any, rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The rows ``model`` would cut (any member over its ``max_length``)."""
    flags = [e.truncated for e in model.tokenize([t for _, t, _ in rows], windows=False)]
    return [row for row, cut in zip(rows, flags, strict=True) if cut]


def cost(model: Any, rows: list[tuple[str, str, str]]) -> dict[str, float]:
    """Milliseconds per text to score ``rows`` cut and read whole (one batched ``predict``
    each, before any window is cached; a shared CPU makes this indicative only)."""
    texts = [t for _, t, _ in rows]
    out = {}
    for mode in ("truncate", "window"):
        set_mode(model, mode)
        started = time.perf_counter()
        model.predict(texts)
        out[f"{mode}_ms"] = round(1000 * (time.perf_counter() - started) / len(texts), 1)
    return out


def choose(dev: dict[str, dict[str, Any]], names: Sequence[str]) -> str:
    """The aggregation with the best dev accuracy summed over models (first on ties)."""
    totals = {name: sum(result[name] for result in dev.values()) for name in names}
    return max(names, key=lambda name: (totals[name], -list(names).index(name)))


def markdown(result: dict[str, Any]) -> str:
    names = result["aggregations"]
    chosen = result["chosen"]
    lines = [
        f"Texts the model would cut, from `*/dev.csv.gz` and `*/test.csv.gz`; accuracy %, "
        f"cut (`truncate`) and read whole in windows with each aggregation, same run "
        f"(`python bench/longtext.py`, {result['date']}). Aggregation chosen on dev: "
        f"**{chosen}**. The last column is the cost per long test review, scored in one "
        f"batch, cut and read whole (a shared 2-core CPU: indicative only).",
        "",
        "| model | split | texts | truncate | "
        + " | ".join(f"**{n}**" if n == chosen else n for n in names)
        + " | windows/text | ms/text cut → whole |",
        "|---|---|---:|---:|" + "---:|" * len(names) + "---:|---:|",
    ]
    for split in ("dev", "test"):
        for model, r in result[split].items():
            cells = [f"**{r[n]:.2f}**" if n == chosen else f"{r[n]:.2f}" for n in names]
            speed = f"{r['truncate_ms']} → {r['window_ms']}" if "window_ms" in r else ""
            lines.append(
                f"| {model} | {split} | {r['texts']} | {r['truncate']:.2f} | "
                + " | ".join(cells)
                + f" | {r['windows_mean']} | {speed} |"
            )
    return "\n".join(lines)


def write_card(table: str) -> None:
    text = MODEL_CARD.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {MODEL_CARD} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    MODEL_CARD.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="accurate,fast,balanced,ngram")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-docs", action="store_true", help="Do not update docs/model.md.")
    parser.add_argument(
        "--render", action="store_true", help="Only rewrite the table from the saved results."
    )
    args = parser.parse_args()
    if args.render:
        write_card(markdown(json.loads(RESULTS.read_text(encoding="utf-8"))))
        return

    import qinggan
    from qinggan import windows

    splits = {split: read_split(args.data, split) for split in ("dev", "test")}
    cache: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "aggregations": list(windows.AGGREGATIONS),
        "dev": {},
        "test": {},
    }
    started = time.perf_counter()
    for name in args.models.split(","):
        model = qinggan.load(name, threads=args.threads, long_texts="window")
        long = {split: long_rows(model, rows) for split, rows in splits.items()}
        timing = cost(model, long["test"])
        cache_windows(model, cache)
        for split, rows in long.items():
            result[split][name] = score(model, rows)
            print(split, name, result[split][name], flush=True)
        result["test"][name].update(timing)
    result["chosen"] = choose(result["dev"], result["aggregations"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown(result)
    print(table)
    if not args.no_docs:
        write_card(table)


if __name__ == "__main__":
    main()
