"""Measure a trained bundle on the shared test splits and record the numbers in its manifest.

``python -m qinggan.train.finalize BUNDLE DATA_DIR [--report docs/eval/NAME]`` scores every
``*/test.csv.gz`` with the bundle's default variant (and the other variant's accuracy),
times batch throughput and single-text latency in-process, writes them into
``qinggan.json`` (``metrics``) and optionally a Markdown/JSON report. No torch needed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from ..bundle import load_bundle, rewrite_manifest
from ..engine import Predictor, load
from ..errors import run_main
from ..evaluate import evaluate_examples, expand_inputs, to_markdown
from .data import read_labelled, sample


def measure_speed(clf: Predictor, texts: list[str], singles: int = 200) -> dict[str, float]:
    """Texts/s for one ``predict`` call over ``texts`` and p50/p95 ms of single-text calls."""
    clf.predict(texts[:64])
    started = time.perf_counter()
    clf.predict(texts)
    throughput = len(texts) / (time.perf_counter() - started)
    latencies = []
    for text in texts[:singles]:
        t0 = time.perf_counter()
        clf(text)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    return {
        "texts_per_second": round(throughput, 1),
        "single_p50_ms": round(statistics.median(latencies), 2),
        "single_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "texts": len(texts),
        "threads": clf.threads,
    }


def _column(rows: dict[str, dict[str, Any]], metric: str) -> dict[str, float]:
    """One metric of the model's row for each data set, rounded for the manifest."""
    return {k: round(float(r["model"][metric]), 4) for k, r in rows.items()}


def finalize(
    bundle_dir: Path,
    data_dir: Path,
    report: Path | None = None,
    threads: int = 2,
    name: str | None = None,
) -> dict:
    """Score, time and re-write the manifest (optionally under a new ``name``)."""
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    sets = {src: read_labelled(path, src) for src, path in expand_inputs([data_dir])}
    clf = load(bundle_dir, threads=threads)
    result = evaluate_examples(clf, sets)
    result.model = name or result.model
    metrics: dict[str, object] = {
        "variant": clf.variant,
        "test_accuracy": _column(result.rows, "accuracy"),
        "test_macro_f1": _column(result.rows, "macro_f1"),
        "test_ece": _column(result.rows, "ece"),
    }
    other = next((v for v in m.models if v != clf.variant), None)
    if other:
        other_clf = load(bundle_dir, variant=other, threads=threads)
        other_report = evaluate_examples(other_clf, sets)
        metrics[f"test_accuracy_{other}"] = _column(other_report.rows, "accuracy")
    pool = [e.text for e in sample([e for s in sets.values() for e in s], 1024, 0)]
    metrics["speed"] = {
        "in_process": measure_speed(clf, pool),
        "cpu": "2-core shared dev VM, ONNX Runtime",
    }
    rewrite_manifest(bundle_dir, name=name or m.name, metrics=metrics)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.with_suffix(".md").write_text(to_markdown(result), encoding="utf-8")
        report.with_suffix(".json").write_text(
            json.dumps({**result.to_dict(), "metrics": metrics}, ensure_ascii=False, indent=2)
            + "\n",
            encoding="utf-8",
        )
    return metrics


def ship(bundle_dir: Path, dest: Path, variants: tuple[str, ...] = ("int8",)) -> None:
    """Copy ``variants`` of a finalized bundle to ``dest`` (e.g. ``src/qinggan/models/accurate``)
    with a manifest listing only them (the fp32 graph is too large to ship)."""
    m = load_bundle(bundle_dir).manifest
    dest.mkdir(parents=True, exist_ok=True)
    models = {v: m.models[v] for v in variants}
    for rel in (m.tokenizer, *models.values()):
        shutil.copyfile(bundle_dir / rel, dest / rel)
    default = m.default_variant if m.default_variant in models else variants[0]
    rewrite_manifest(  # other files of the run (none today) are not shipped
        bundle_dir, out_dir=dest, models=models, default_variant=default, extra_files=()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", help="rename the bundle (its manifest name)")
    parser.add_argument("--ship", type=Path, help="then copy its int8 variant here")
    parser.add_argument("--skip-eval", action="store_true", help="only ship (already finalized)")
    args = parser.parse_args()
    if not args.skip_eval:
        metrics = finalize(args.bundle, args.data_dir, args.report, args.threads, args.name)
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
    if args.ship:
        ship(args.bundle, args.ship)


if __name__ == "__main__":
    run_main(main)
