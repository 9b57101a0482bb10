"""Learning curve of ``qinggan adapt``: how many labelled texts of a new domain are worth it.

For each size (rows of the domain's ``train`` pool, validation part included) and seed,
a seeded random subset is written to a CSV and ``qinggan adapt`` runs on it as a separate
process (``--base accurate --data-dir DATA``), exactly as a user would run it; then the
adapted bundle is scored on the domain's ``test`` split. Reported per run: test accuracy,
macro-F1 and ECE, ChnSentiCorp test accuracy after adapting (from the manifest, measured by
the run itself), the method chosen, wall time and peak RSS of the adapt process. The base
model's numbers on the same test split come first.

    python bench/adapt.py [--sizes 100,200,400,800,1600] [--seeds 3] \\
        [--domain ../shared/domains/conversation] [--data-dir ../shared/data]

Writes ``bench/results/adapt.json``, ``docs/adapt.png`` and the tables of ``docs/adapt.md``
(between its ``<!-- bench:adapt -->`` markers). The CPU is shared: the load average at the
start and end of every run is recorded beside its wall time.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "adapt.json"
DOC = REPO / "docs" / "adapt.md"
PLOT = REPO / "docs" / "adapt.png"
MARK_BEGIN, MARK_END = "<!-- bench:adapt -->", "<!-- /bench:adapt -->"

# runs `qinggan adapt` and reports the process's own peak RSS (no child processes involved)
RUNNER = """
import resource, sys
from qinggan.cli import main
sys.argv = ["qinggan", "adapt", *sys.argv[2:]]
try:
    main()
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    open(RSS_FILE, "w").write(str(peak))
"""


def read_rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def subset(rows: list[dict[str, str]], n: int, seed: int) -> list[dict[str, str]]:
    return random.Random(f"adapt-bench-{seed}").sample(rows, n)


def run_adapt(
    rows: list[dict[str, str]], out: Path, data_dir: str, seed: int, extra: list[str]
) -> dict[str, Any]:
    """One ``qinggan adapt`` process: wall time, peak RSS, its manifest's record."""
    work = out.parent
    data = work / f"{out.name}.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    rss_file = work / f"{out.name}.rss"
    code = RUNNER.replace("RSS_FILE", repr(str(rss_file)))
    args = [str(data), "--out", str(out), "--data-dir", data_dir, "--seed", str(seed), *extra]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "adapt", *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"adapt failed ({proc.returncode}): {proc.stderr[-2000:]}")
    manifest = json.loads((out / "qinggan.json").read_text(encoding="utf-8"))
    adapt = manifest["training"]["adapt"]
    general = manifest["metrics"]["adapt"].get("chnsenticorp_test", {})
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "method": adapt["chosen"]["method"],
        "weights": adapt["chosen"]["weights"],
        "held_out_accuracy": adapt["chosen"].get("held_out_accuracy"),
        "tried": adapt["tried"],
        "chnsenticorp_base": (general.get("base") or {}).get("accuracy"),
        "chnsenticorp_adapted": (general.get("adapted") or {}).get("accuracy"),
    }


def score(model: str | Path, rows: list[dict[str, str]]) -> dict[str, float]:
    import numpy as np

    import qinggan
    from qinggan.evaluate import probs_metrics

    clf = qinggan.load(model)
    preds = clf.predict([r["text"] for r in rows])
    probs = np.array([[p.scores[label] for label in clf.labels] for p in preds])
    index = {"0": clf.labels.index("Negative"), "1": clf.labels.index("Positive")}
    m = probs_metrics([index[r["label"]] for r in rows], probs)
    return {"accuracy": round(m.accuracy, 4), "macro_f1": round(m.macro_f1, 4),
            "ece": round(float(m.ece or 0.0), 4)}  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> list[float]:
        values = [r[key] for r in runs if r.get(key) is not None]
        return [round(statistics.mean(values), 4), round(min(values), 4), round(max(values), 4)]

    keys = ("accuracy", "ece", "chnsenticorp_adapted", "wall_s", "peak_rss_mb")
    return {key: stat(key) for key in keys}


def markdown(results: dict[str, Any]) -> str:
    base = results["base"]
    lines = [
        MARK_BEGIN,
        f"Domain `{results['domain']}`, test split of {results['test_rows']:,} texts; base "
        f"`accurate`: accuracy {100 * base['accuracy']:.2f}%, macro-F1 "
        f"{100 * base['macro_f1']:.2f}%, ECE {100 * base['ece']:.2f}%; ChnSentiCorp test "
        f"{_pct(results.get('chnsenticorp_base'))}. Mean (min–max) over seeds.",
        "",
        "| rows | seeds | accuracy % | Δ vs base | ECE % | ChnSentiCorp % | wall s | peak RSS MB "
        "| methods chosen |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, entry in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        s, runs = entry["summary"], entry["runs"]
        methods = ", ".join(sorted({r["method"] for r in runs}))
        lines.append(
            f"| {int(size):,} | {len(runs)} | {_range(s['accuracy'])} | "
            f"{100 * (s['accuracy'][0] - base['accuracy']):+.2f} | {_range(s['ece'])} | "
            f"{_range(s['chnsenticorp_adapted'])} | {_range(s['wall_s'], pct=False)} | "
            f"{_range(s['peak_rss_mb'], pct=False)} | {methods} |"
        )
    lines += [
        "",
        f"Machine: {results['machine']}; load average during the runs "
        f"{results['load_range'][0]:.1f}–{results['load_range'][1]:.1f} (the CPU was shared "
        "with other jobs: wall times are upper bounds).",
        MARK_END,
    ]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _range(values: list[float], pct: bool = True) -> str:
    scale = 100 if pct else 1
    mean, lo, hi = (scale * v for v in values)
    digits = 2 if pct else 0
    return f"{mean:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in results["sizes"])
    acc = [100 * results["sizes"][str(s)]["summary"]["accuracy"][0] for s in sizes]
    lo = [100 * results["sizes"][str(s)]["summary"]["accuracy"][1] for s in sizes]
    hi = [100 * results["sizes"][str(s)]["summary"]["accuracy"][2] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.fill_between(sizes, lo, hi, alpha=0.2, label="min–max over seeds")
    ax.plot(sizes, acc, "o-", label="adapted (mean)")
    ax.axhline(100 * results["base"]["accuracy"], color="grey", ls="--", label="base accurate")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("labelled rows (validation part included)")
    ax.set_ylabel(f"accuracy on {results['domain']} test (%)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT)
    plt.close(fig)


def write_doc(results: dict[str, Any]) -> None:
    block = markdown(results)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"{MARK_BEGIN}\n{MARK_END}\n"
    head, rest = text.split(MARK_BEGIN, 1)
    DOC.write_text(head + block + rest.split(MARK_END, 1)[1], encoding="utf-8")


def known_base(domain: str) -> dict[str, float] | None:
    """The base's test scores from the main results (same domain), to spare a variant's run
    the minute of scoring the base again."""
    if not RESULTS.exists():
        return None
    prior = json.loads(RESULTS.read_text(encoding="utf-8"))
    base: dict[str, float] | None = prior.get("base")
    return base if prior.get("domain") == Path(domain).name else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,200,400,800,1600")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--domain", default=str(REPO.parent / "shared/domains/conversation"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    parser.add_argument("--results", default=str(RESULTS), help="JSON results file")
    parser.add_argument("--adapt-args", default="", help="extra adapt flags (a variant)")
    parser.add_argument("--render-only", action="store_true", help="redo the doc from JSON")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs in the JSON results; add seeds"
    )
    args = parser.parse_args()
    results_path = Path(args.results)
    extra = args.adapt_args.split()
    is_main = results_path.resolve() == RESULTS.resolve()
    if args.render_only:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
        write_doc(results)
        plot(results)
        return
    domain = Path(args.domain)
    test = read_rows(domain / "test.csv.gz")
    pool = read_rows(domain / "train.csv.gz")
    done = json.loads(results_path.read_text(encoding="utf-8")) if args.resume else None
    results: dict[str, Any] = done or {
        "domain": domain.name, "test_rows": len(test), "sizes": {},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, Python "
                   f"{platform.python_version()}",
        "base": known_base(args.domain) or score("accurate", test),
    }  # fmt: skip
    print(f"base accurate on {domain.name} test: {results['base']}", flush=True)
    loads = list(results.get("load_range", []))
    with tempfile.TemporaryDirectory(prefix="adapt-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            runs = list(results["sizes"].get(str(size), {}).get("runs", []))
            if len(runs) >= args.seeds:
                continue
            for seed in range(len(runs), args.seeds):
                out = Path(tmp) / f"n{size}-s{seed}"
                run = run_adapt(subset(pool, size, seed), out, args.data_dir, seed, extra)
                run.update(score(out, test))
                loads += run["load_avg"]
                runs.append(run)
                print(f"{size} rows, seed {seed}: {json.dumps(run)}", flush=True)
                results["chnsenticorp_base"] = run["chnsenticorp_base"]
            results["sizes"][str(size)] = {"runs": runs, "summary": summary(runs)}
            results["load_range"] = [min(loads), max(loads)]
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            if is_main:
                write_doc(results)
    if is_main:
        plot(results)


if __name__ == "__main__":
    main()
