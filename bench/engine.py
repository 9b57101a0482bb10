"""In-process engine curves: texts/s vs batch size and vs text length, fp32 and int8.

Also int8-vs-fp32 label agreement on real texts, and a sweep of ONNX Runtime session
options (threads, spinning, memory arena, graph optimisation level) so the report can say
what each setting buys on this machine. Writes ``bench/results/engine.json`` and
``bench/results/engine.png`` (matplotlib).

    python bench/engine.py                     # base-shaped random model, 2 threads
    python bench/engine.py --model fast        # a built-in bundle instead
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from corpus import DEFAULT_DATA, load_texts  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
TOKEN_LENGTHS = (16, 32, 64, 128, 256, 512)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_rate(run, count: int, budget_s: float, min_reps: int = 1) -> float:  # type: ignore[no-untyped-def]
    """Items/s of ``run()`` (which handles ``count`` items), repeated for about ``budget_s``."""
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < budget_s:
        run()
        reps += 1
    return count * reps / (time.perf_counter() - start)


def batch_size_curve(clf, texts: list[str], tokens: int, budget_s: float) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """texts/s for batches of ``tokens``-token texts (no padding), by batch size."""
    curve = {}
    clf.max_batch_tokens = 1 << 30
    for batch_size in BATCH_SIZES:
        clf.batch_size = batch_size
        batch = length_texts(texts, tokens, batch_size)
        clf.predict(batch)  # warm-up for this shape
        curve[batch_size] = round(
            timed_rate(lambda b=batch: clf.predict(b), batch_size, budget_s), 2
        )
        log(f"  batch {batch_size:>2}: {curve[batch_size]:.1f} texts/s")
    return curve


def length_texts(texts: list[str], tokens: int, count: int) -> list[str]:
    """``count`` texts of about ``tokens`` tokens ([CLS]/[SEP] included), cut from real reviews."""
    pool = "".join(texts)
    chars = tokens - 2
    return [pool[(i * 997) % (len(pool) - chars) :][:chars] for i in range(count)]


def length_curve(clf, texts: list[str], batch_size: int, budget_s: float) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """texts/s for batches of ``batch_size`` texts of fixed token length."""
    curve = {}
    clf.batch_size = batch_size
    clf.max_batch_tokens = 1 << 30
    for tokens in TOKEN_LENGTHS:
        if tokens > clf.max_length:
            break
        batch = length_texts(texts, tokens, batch_size)
        clf.predict(batch)  # warm-up for this shape
        curve[tokens] = round(timed_rate(lambda b=batch: clf.predict(b), batch_size, budget_s), 2)
        log(f"  {tokens:>3} tokens x {batch_size}: {curve[tokens]:.1f} texts/s")
    return curve


WINDOW_BUDGETS = (256, 512, 2048, 8192)


def window_plans(clf, texts: list[str], window: int, budget_s: float) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """texts/s when texts arrive ``window`` at a time (what a server with ``window`` requests
    in flight can sort), for each padded-token budget per model batch."""
    subset = texts[: 2 * window]
    windows = [subset[i : i + window] for i in range(0, len(subset), window)]
    clf.batch_size = 64
    out = {}
    for budget in WINDOW_BUDGETS:
        clf.max_batch_tokens = budget

        def run() -> None:
            for chunk in windows:
                clf.predict(chunk)

        out[budget] = round(timed_rate(run, len(subset), budget_s), 2)
        log(f"  windows of {window}, token budget {budget:>4}: {out[budget]:.1f} texts/s")
    return out


def padding_by_token_budget(clf, texts: list[str]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Padded tokens / real tokens when texts are batched ``window`` at a time (no timing).

    ``window`` = requests in flight: what a server can sort before it runs a batch. The
    last row, ``all``, is the whole corpus sorted at once, as offline batch scoring does.
    """
    from qinggan.planning import plan_batches

    lengths = [len(e) for e in clf.tokenize(texts)]
    real = sum(lengths)
    out: dict[str, Any] = {"texts": len(lengths), "mean_tokens": round(real / len(lengths), 1)}
    for window in (16, 64, len(lengths)):
        row = {}
        for budget in (256, 512, 1024, 2048, 4096, 8192):
            padded = 0
            for start in range(0, len(lengths), window):
                chunk = lengths[start : start + window]
                for batch in plan_batches(chunk, 32, budget):
                    padded += len(batch) * max(chunk[i] for i in batch)
            row[budget] = round(padded / real, 3)
        out["all" if window == len(lengths) else str(window)] = row
    return out


def single_latency_ms(clf, texts: list[str], count: int = 60) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for text in texts[:5]:
        clf.predict([text])
    samples = []
    for text in texts[:count]:
        t0 = time.perf_counter()
        clf.predict([text])
        samples.append((time.perf_counter() - t0) * 1000)
    return {
        "p50": round(float(np.percentile(samples, 50)), 3),
        "p95": round(float(np.percentile(samples, 95)), 3),
    }


def agreement(model: str, texts: list[str], threads: int) -> dict[str, Any]:
    """int8-vs-fp32 label agreement and the largest probability difference."""
    import qinggan

    probs = {}
    for variant in ("fp32", "int8"):
        clf = qinggan.load(model, variant=variant, threads=threads)
        preds = clf.predict(texts)
        probs[variant] = np.array([[p.scores[label] for label in clf.labels] for p in preds])
        del clf
        gc.collect()
    same = (probs["fp32"].argmax(1) == probs["int8"].argmax(1)).mean()
    margin = np.abs(probs["fp32"][:, 0] - probs["fp32"][:, 1])
    return {
        "n": len(texts),
        "label_agreement": round(float(same), 4),
        "max_abs_prob_diff": round(float(np.abs(probs["fp32"] - probs["int8"]).max()), 4),
        "mean_abs_prob_diff": round(float(np.abs(probs["fp32"] - probs["int8"]).mean()), 4),
        "fp32_median_margin": round(float(np.median(margin)), 4),
    }


def session_with(path: Path, threads: int, **settings: Any) -> ort.InferenceSession:
    """A CPU session like ``qinggan.engine.create_session`` with some settings changed."""
    from qinggan.engine import session_options

    options = session_options(threads, settings.get("spinning"))
    if "graph_level" in settings:
        options.graph_optimization_level = settings["graph_level"]
    options.enable_cpu_mem_arena = settings.get("arena", True)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


OPTION_SETS: dict[str, dict[str, Any]] = {
    "default (engine.py today)": {},
    "1 thread": {"threads": 1},
    "spinning off": {"spinning": False},
    "memory arena off": {"arena": False},
    "graph level BASIC": {"graph_level": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC},
    "graph level EXTENDED": {"graph_level": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED},
}


def option_sweep(clf, texts: list[str], threads: int, budget_s: float) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Single-text latency (real texts) and batch-32 throughput (64-token texts) per setting."""
    path = clf.bundle.model_path(clf.variant)
    original = clf.session
    out = {}
    clf.batch_size, clf.max_batch_tokens = 32, 1 << 30
    subset = length_texts(texts, 64, 32)
    for name, settings in OPTION_SETS.items():
        settings = dict(settings)
        n_threads = settings.pop("threads", threads)
        clf.session = session_with(path, n_threads, **settings)
        out[name] = {
            "single_ms": single_latency_ms(clf, texts, count=30),
            "batch32_texts_per_s": round(
                timed_rate(lambda: clf.predict(subset), len(subset), budget_s), 2
            ),
        }
        log(f"  {clf.variant} {name}: {out[name]}")
    clf.session = original
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, data in results["variants"].items():
        by_size = {int(k): v for k, v in data["batch_size_curve"].items()}
        by_length = {int(k): v for k, v in data["length_curve"].items()}
        left.plot(*zip(*sorted(by_size.items()), strict=True), marker="o", label=variant)
        right.plot(*zip(*sorted(by_length.items()), strict=True), marker="o", label=variant)
    left.set(xscale="log", xlabel="batch size (64-token texts)", ylabel="texts/s")
    left.set_xticks(list(BATCH_SIZES), [str(b) for b in BATCH_SIZES])
    right.set(xscale="log", yscale="log", xlabel="tokens per text", ylabel="texts/s")
    right.set_xticks(list(TOKEN_LENGTHS), [str(n) for n in TOKEN_LENGTHS])
    for ax in (left, right):
        ax.minorticks_off()
    agree = results.get("agreement", {}).get("label_agreement")
    title = (
        f"{results.get('model_label', results['model_name'])} - {results['threads']} ORT threads"
    )
    if agree is not None:
        title += f" - int8/fp32 label agreement {agree:.1%}"
    fig.suptitle(title)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="bundle path or built-in name (default: base-shaped random)"
    )
    parser.add_argument("--shape", choices=("base", "small"), default="base")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per measured point")
    parser.add_argument("--agreement-texts", type=int, default=300)
    parser.add_argument("--no-sweep", action="store_true", help="skip the session-option sweep")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "engine.json")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)

    import qinggan

    texts, text_info = load_texts(args.data, 2000)
    model = args.model
    if model is None:
        import models

        prepared = models.prepare(models.BASE if args.shape == "base" else models.SMALL)
        model = str(prepared.bundle_dir)
        label = f"random StructBERT-base-shaped model ({prepared.shape.key})"
    else:
        label = model
    results: dict[str, Any] = {
        "model_label": label,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": ["python", "bench/engine.py", *(argv if argv is not None else sys.argv[1:])],
        "model": model,
        "threads": args.threads,
        "texts": text_info,
        "variants": {},
    }
    for variant in ("fp32", "int8"):
        try:
            clf = qinggan.load(model, variant=variant, threads=args.threads)
        except qinggan.errors.BundleError as exc:
            log(f"{variant}: skipped ({exc})")
            continue
        results["model_name"] = clf.name
        if "padding" not in results:
            results["padding"] = padding_by_token_budget(clf, texts)
            log(f"padding by token budget: {results['padding']}")
        log(f"{variant}: single-text latency")
        data: dict[str, Any] = {"single_ms": single_latency_ms(clf, texts)}
        log(f"{variant}: batch-size curve")
        data["batch_size_curve"] = batch_size_curve(clf, texts, 64, args.budget)
        log(f"{variant}: length curve")
        data["length_curve"] = length_curve(clf, texts, 8, args.budget)
        log(f"{variant}: windows of 16 texts by token budget")
        data["window16_by_token_budget"] = window_plans(clf, texts, 16, args.budget)
        if not args.no_sweep:
            log(f"{variant}: session options")
            data["session_options"] = option_sweep(clf, texts, args.threads, args.budget)
        results["variants"][variant] = data
        del clf
        gc.collect()
    if len(results["variants"]) == 2:
        log("int8 vs fp32 agreement")
        results["agreement"] = agreement(model, texts[: args.agreement_texts], args.threads)
        log(f"  {results['agreement']}")
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(results, png)
    log(f"wrote {args.out} and {png}")
    if not args.no_docs:
        import report

        report.write_docs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
