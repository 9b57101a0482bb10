"""Single-review latency and batch throughput of the built-in models, in process.

The model card's speed targets (``accurate``: one review in <= 10 ms p50; ``fast``: >= 1,000
texts/s and p50 <= 3 ms) are about one text at a time on this 2-core CPU. A shared VM's
speed drifts by tens of percent within minutes, so the models are measured in alternating
rounds (the order rotates each round; each model is loaded afresh for its turn, as a
server holds one model) and each figure is the median over rounds, with the range beside it.

    python bench/builtins.py [--rounds 5] [--texts 300] [--models ngram,fast,balanced,accurate]

Writes ``bench/results/builtins.json``; ``python bench/report.py`` renders it into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DEFAULT_DATA, load_texts  # noqa: E402
from engine import single_latency_ms, timed_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "builtins.json"


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    p50s = [r["p50_ms"] for r in rounds]
    rates = [r["texts_per_s"] for r in rounds]
    return {
        "single_p50_ms": round(statistics.median(p50s), 2),
        "single_p50_ms_range": [round(min(p50s), 2), round(max(p50s), 2)],
        "single_p95_ms": round(statistics.median(r["p95_ms"] for r in rounds), 2),
        "texts_per_s": round(statistics.median(rates), 1),
        "texts_per_s_range": [round(min(rates), 1), round(max(rates), 1)],
        "rounds": rounds,
    }


def run(models: list[str], texts: list[str], rounds: int, threads: int) -> dict[str, Any]:
    """Each round loads each model afresh for its turn, as a server process holds one model
    (a paired check found idle sessions of other models in the process cost nothing)."""
    import gc

    import qinggan

    per_model: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    rng = random.Random(0)
    for index in range(rounds):
        order = models[index % len(models) :] + models[: index % len(models)]
        batch = texts[:]
        rng.shuffle(batch)
        for name in order:
            clf = qinggan.load(name, threads=threads)
            clf.predict(texts[:32])  # warm-up: first calls allocate arenas, page weights in
            single = single_latency_ms(clf, batch, count=len(batch))  # after 5 more warm-ups
            per_model[name].append(
                {
                    "round": index,
                    "p50_ms": single["p50"],
                    "p95_ms": single["p95"],
                    "texts_per_s": round(
                        timed_rate(functools.partial(clf.predict, batch), len(batch), 0.0), 1
                    ),
                }
            )
            del clf
            gc.collect()
        print(
            f"round {index + 1}/{rounds}: "
            + "  ".join(f"{n} p50 {per_model[n][-1]['p50_ms']:.2f} ms" for n in models),
            flush=True,
        )
    return {name: summarise(r) for name, r in per_model.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="ngram,fast,balanced,accurate")
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    texts, corpus = load_texts(args.data, args.texts)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = run(models, texts, args.rounds, args.threads)
    print(f"\n{'model':<10} {'single p50 ms':>14} {'(range)':>16} {'p95 ms':>8} {'texts/s':>9}")
    for name, r in results.items():
        lo, hi = r["single_p50_ms_range"]
        print(
            f"{name:<10} {r['single_p50_ms']:>14.2f} {f'{lo:.2f}–{hi:.2f}':>16} "
            f"{r['single_p95_ms']:>8.2f} {r['texts_per_s']:>9.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": started,
        "argv": ["python", "bench/builtins.py", *sys.argv[1:]],
        "rounds": args.rounds,
        "threads": args.threads,
        "corpus": corpus,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    args.out.write_text(json.dumps({"meta": meta, "models": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
