"""Explanations measured: faithfulness (ERASER), mixed reviews, stability and cost.

For each model (``accurate``, ``fast``, ``ngram`` and a converted checkpoint):

- **Faithfulness** (ERASER, DeYoung et al. 2020) on reviews sampled from every
  ``*/test.csv.gz``: *comprehensiveness* is how much the probability of the predicted label
  drops when the strongest span supporting it is deleted; *sufficiency* how much it drops
  when only that span is kept (lower is better). Both against a random span of the same
  length, at clause and at phrase level. Every variant is scored in one batched call
  together with the full texts, so batch-mate noise treats all alike.
- **Mixed reviews**: two one-clause test reviews of opposite gold labels joined by a
  contrast word ("A，但是B"): does the praised part score > 0 and the blamed part < 0? How
  often ``mixed`` fires per test split, on all reviews and on reviews with no contrast word
  (a proxy for one-sided ones), with examples; a threshold sweep on dev.
- **Stability**: the int8 noise floor (the same texts scored alone and among batch-mates)
  next to the explanations' own differences (explained alone and inside batches).
- **Cost**: one review at a time, ``predict([t], explain=True)`` against ``predict([t])``.

    python bench/explain.py [--reviews 1000] [--models accurate,fast,ngram,converted]

Writes ``bench/results/explain.json`` and the tables in ``docs/explain.md`` (between the
``bench:explain`` markers). Nothing from the data set is written except short examples.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from corpus import DEFAULT_DATA, MAX_CHARS  # noqa: E402

import qinggan  # noqa: E402
from qinggan.explain.clauses import CONTRAST_WORDS, clauses  # noqa: E402
from qinggan.explain.mixed import MIXED_SUPPORT, is_mixed  # noqa: E402

RESULTS = BENCH / "results" / "explain.json"
DOC = REPO / "docs" / "explain.md"
MARK_BEGIN, MARK_END = "<!-- bench:explain -->", "<!-- /bench:explain -->"
TEMPLATES = ("{a}，但是{b}", "{b}，不过{a}", "{a}，可是{b}", "{b}，但{a}")
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_split(data: Path, split: str) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for file in sorted(data.glob(f"*/{split}.csv.gz")):
        with gzip.open(file, "rt", encoding="utf-8", newline="") as fh:
            rows = [(r["text"], int(r["label"])) for r in csv.DictReader(fh)]
        out[file.parent.name] = [(t, y) for t, y in rows if 0 < len(t) <= MAX_CHARS]
    if not out:
        raise SystemExit(f"error: no */{split}.csv.gz under {data} (pass --data)")
    return out


# random-init BERT checkpoints (no real one on this machine), converted to int8 bundles:
# a small one, and one shaped like the built-in transformer (12 layers, 384 wide)
CONVERTED = {
    "converted": {"num_layers": 4, "hidden": 128},
    "converted-12x384": {"num_layers": 12, "hidden": 384, "heads": 12, "intermediate": 1536},
}


def load_model(name: str, workdir: Path) -> Any:
    if name not in CONVERTED:
        return qinggan.load(name)
    from qinggan.convert import convert_checkpoint, make_random_checkpoint

    bundle = workdir / name
    if not (bundle / "qinggan.json").is_file():
        src = make_random_checkpoint(workdir / f"{name}-checkpoint", "hf", **CONVERTED[name])
        convert_checkpoint(src, bundle, max_length=128, force_int8=True)
    return qinggan.load(bundle, variant="int8")


# -- faithfulness ----------------------------------------------------------------------------


def supporting(explanation: Any, level: str, sign: int) -> Any:
    return explanation.strongest(sign, level)


def faithfulness(clf: Any, texts: list[str], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    positive = clf.labels.index("Positive") if "Positive" in clf.labels else len(clf.labels) - 1
    preds = clf.predict(texts, explain=True)
    variants: list[str] = []
    cases = []  # (review index, level, kind, deleted index, kept index)
    skipped = {"clause": 0, "phrase": 0}
    for i, (text, pred) in enumerate(zip(texts, preds, strict=True)):
        sign = 1 if clf.labels.index(pred.label) == positive else -1
        for level in ("clause", "phrase"):
            span = supporting(pred.explanation, level, sign)
            if span is None:
                skipped[level] += 1
                continue
            width = span.end - span.start
            start = rng.randrange(0, len(text) - width + 1)
            for kind, (a, b) in (
                ("top", (span.start, span.end)),
                ("random", (start, start + width)),
            ):
                cases.append((i, level, kind, len(variants), len(variants) + 1))
                variants += [text[:a] + text[b:], text[a:b]]
    probs = clf.predict(list(texts) + variants)
    full = probs[: len(texts)]
    rest = probs[len(texts) :]
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for i, level, kind, deleted, kept in cases:
        label = preds[i].label
        p = full[i].scores[label]
        entry = table.setdefault(level, {}).setdefault(kind, {"comp": [], "suff": []})
        entry["comp"].append(p - rest[deleted].scores[label])
        entry["suff"].append(p - rest[kept].scores[label])
    out: dict[str, Any] = {"reviews": len(texts), "no_supporting_span": skipped}
    for level, kinds in table.items():
        row = {}
        for kind, values in kinds.items():
            for metric, xs in values.items():
                row[f"{metric}_{kind}_mean"] = round(float(np.mean(xs)), 4)
                row[f"{metric}_{kind}_median"] = round(float(np.median(xs)), 4)
        row["n"] = len(kinds["top"]["comp"])
        row["comp_ratio_mean"] = _ratio(row["comp_top_mean"], row["comp_random_mean"])
        row["comp_ratio_median"] = _ratio(row["comp_top_median"], row["comp_random_median"])
        row["width_chars_median"] = None
        out[level] = row
    for level in ("clause", "phrase"):
        widths = [
            s.end - s.start
            for p in preds
            for s in [supporting(p.explanation, level, 1 if p.label == "Positive" else -1)]
            if s is not None
        ]
        if level in out:
            out[level]["width_chars_median"] = float(np.median(widths)) if widths else None
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 1e-9 else None


# -- mixed -------------------------------------------------------------------------------------


def one_clause(rows: list[tuple[str, int]], label: int) -> list[str]:
    out = []
    for text, y in rows:
        body = text.strip().rstrip("。！!.~～…，,")
        if y == label and 4 <= len(body) <= 30 and len(clauses(body)) == 1:
            if clauses(body)[0] == (0, len(body)) and not any(w in body for w in CONTRAST_WORDS):
                out.append(body)
    return out


ONE_SIDED = ("{a}，{b}", "{a}，而且{b}", "{a}。{b}", "{a}，还有{b}")


def pair_texts(
    split: dict[str, list[tuple[str, int]]], count: int, seed: int
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Synthetic reviews from one-clause test reviews: ``count`` mixed ones (a positive and
    a negative joined by a contrast word; with their two parts) and ``count`` one-sided ones
    (two of the same label joined by a comma or 而且)."""
    rng = random.Random(seed)
    rows = [r for rs in split.values() for r in rs]
    praise, blame = one_clause(rows, 1), one_clause(rows, 0)
    mixed, parts, one_sided = [], [], []
    for n in range(count):
        a, b = rng.choice(praise), rng.choice(blame)
        mixed.append(TEMPLATES[n % len(TEMPLATES)].format(a=a, b=b))
        parts.append((a, b))
        same = praise if n % 2 else blame
        one_sided.append(
            ONE_SIDED[n % len(ONE_SIDED)].format(a=rng.choice(same), b=rng.choice(same))
        )
    return mixed, parts, one_sided


def mixed_pairs(
    clf: Any, split: dict[str, list[tuple[str, int]]], count: int, seed: int
) -> dict[str, Any]:
    mixed, parts, one_sided = pair_texts(split, count, seed)
    preds = clf.predict(mixed, explain=True)
    agree = fired = usable = 0
    for (a, b), pred in zip(parts, preds, strict=True):
        found = {s.text: s.score for s in pred.explanation.of_level("clause")}
        if a not in found or b not in found:
            continue
        usable += 1
        agree += found[a] > 0 > found[b]
        fired += pred.explanation.mixed
    false_alarms = [p.explanation.mixed for p in clf.predict(one_sided, explain=True)]
    # the ceiling: pairs whose two parts the model itself labels right when each is read alone
    alone = clf.predict([x for pair in parts for x in pair])
    right = [
        alone[2 * n].label == "Positive" and alone[2 * n + 1].label == "Negative"
        for n in range(len(parts))
    ]
    return {
        "pairs": count,
        "usable": usable,
        "polarity_agreement": round(agree / max(usable, 1), 4),
        "mixed_recall": round(fired / max(usable, 1), 4),
        "one_sided_fires": round(float(np.mean(false_alarms)), 4),
        "parts_read_right_alone": round(float(np.mean(right)), 4),
    }


def sweep(explanations: list[Any]) -> dict[str, float]:
    """How often ``mixed`` would fire at each threshold."""
    return {
        str(t): round(float(np.mean([is_mixed(e.spans, t) for e in explanations])), 4)
        for t in SWEEP
    }


def mixed_rates(
    clf: Any, split: dict[str, list[tuple[str, int]]], per_split: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    contrast = re.compile("|".join(CONTRAST_WORDS))
    out: dict[str, Any] = {}
    for name, rows in split.items():
        sample = rng.sample(rows, min(per_split, len(rows)))
        texts = [t for t, _ in sample]
        preds = clf.predict(texts, explain=True)
        fired = [p.explanation.mixed for p in preds]
        plain = [i for i, t in enumerate(texts) if not contrast.search(t)]
        examples = sorted(
            (texts[i] for i in range(len(texts)) if fired[i] and len(texts[i]) <= 60), key=len
        )[:2]
        out[name] = {
            "reviews": len(texts),
            "fires_all": round(float(np.mean(fired)), 4),
            "no_contrast_word": len(plain),
            "fires_no_contrast_word": round(float(np.mean([fired[i] for i in plain])), 4)
            if plain
            else None,
            "examples": [_example(clf, t) for t in examples],
        }
    return out


def _example(clf: Any, text: str) -> dict[str, Any]:
    e = clf.predict([text], explain=True)[0].explanation
    return {"text": text, "clauses": [[s.text, round(s.score, 2)] for s in e.of_level("clause")]}


def sweep_pairs(
    clf: Any, split: dict[str, list[tuple[str, int]]], count: int, seed: int
) -> dict[str, Any]:
    """Mixed recall on synthetic mixed reviews and false alarms on one-sided ones, per
    threshold (run on dev to pick the threshold)."""
    mixed, _, one_sided = pair_texts(split, count, seed)
    return {
        "mixed_recall": sweep([p.explanation for p in clf.predict(mixed, explain=True)]),
        "one_sided_fires": sweep([p.explanation for p in clf.predict(one_sided, explain=True)]),
    }


# -- stability and cost --------------------------------------------------------------------------


def stability(clf: Any, texts: list[str], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    alone = np.array([clf.predict([t])[0].scores["Positive"] for t in texts])
    order = list(range(len(texts)))
    rng.shuffle(order)
    mixed = np.empty(len(texts))
    for start in range(0, len(texts), 32):
        chunk = order[start : start + 32]
        for i, p in zip(chunk, clf.predict([texts[i] for i in chunk]), strict=True):
            mixed[i] = p.scores["Positive"]
    noise = np.abs(alone - mixed)
    single = [clf.predict([t], explain=True)[0].explanation for t in texts[:100]]
    batched = clf.predict(texts[:100], explain=True)
    diffs = [
        abs(a.score - b.score)
        for e, p in zip(single, batched, strict=True)
        for a, b in zip(e.spans, p.explanation.spans, strict=True)
    ]
    same_spans = all(
        [(s.start, s.end) for s in e.spans] == [(s.start, s.end) for s in p.explanation.spans]
        for e, p in zip(single, batched, strict=True)
    )
    scores = [abs(s.score) for e in single for s in e.spans]
    return {
        "texts": len(texts),
        "noise_prob_median": round(float(np.median(noise)), 5),
        "noise_prob_p99": round(float(np.percentile(noise, 99)), 5),
        "noise_prob_max": round(float(noise.max()), 5),
        "explained_texts": len(single),
        "explanation_same_spans": same_spans,
        "explanation_score_max_diff": float(max(diffs, default=0.0)),
        "span_score_abs_median": round(float(np.median(scores)), 4),
    }


def cost(clf: Any, texts: list[str]) -> dict[str, Any]:
    for t in texts[:5]:
        clf.predict([t], explain=True)
    plain, explained = [], []
    for t in texts:
        t0 = time.perf_counter()
        clf.predict([t])
        t1 = time.perf_counter()
        clf.predict([t], explain=True)
        t2 = time.perf_counter()
        plain.append((t1 - t0) * 1000)
        explained.append((t2 - t1) * 1000)
    ratios = [e / p for p, e in zip(plain, explained, strict=True)]
    return {
        "texts": len(texts),
        "plain_ms_median": round(statistics.median(plain), 3),
        "explain_ms_median": round(statistics.median(explained), 3),
        "ratio_of_medians": round(statistics.median(explained) / statistics.median(plain), 2),
        "ratio_median": round(statistics.median(ratios), 2),
    }


# -- the run and the report ----------------------------------------------------------------------


def run_model(
    name: str, args: argparse.Namespace, test: dict, dev: dict, workdir: Path
) -> dict[str, Any]:
    log(f"{name}: loading")
    clf = load_model(name, workdir)
    rng = random.Random(args.seed)
    pool = [t for rows in test.values() for t, _ in rows]
    reviews = rng.sample(pool, min(args.reviews, len(pool)))
    out: dict[str, Any] = {"method": clf.predict(["很好"], explain=True)[0].explanation.method}
    log(f"{name}: cost on {args.cost_texts} reviews, one at a time")
    out["cost"] = cost(clf, reviews[: args.cost_texts])
    log(f"{name}: faithfulness on {len(reviews)} reviews")
    out["faithfulness"] = faithfulness(clf, reviews, args.seed)
    log(f"{name}: mixed pairs and rates")
    out["mixed_pairs"] = mixed_pairs(clf, test, args.pairs, args.seed)
    out["mixed_rates"] = mixed_rates(clf, test, args.per_split, args.seed)
    if args.sweep:
        out["dev_sweep"] = sweep_pairs(clf, dev, args.pairs, args.seed + 1)
    log(f"{name}: stability")
    out["stability"] = stability(clf, reviews[: args.stability_texts], args.seed)
    return out


def header(*names: str) -> str:
    """A markdown table head; every column but the first two right-aligned."""
    rule = ["---" if i < 2 else "---:" for i in range(len(names))]
    return "| " + " | ".join(names) + " |\n|" + "|".join(rule) + "|"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        MARK_BEGIN,
        f"Run {meta['date']} on {meta['cpu']}: load average {meta['load_before']} before, "
        f"{meta['load_after']} after (a shared 2-core VM; the costs below are ratios measured "
        f"back to back, one review at a time). `mixed` threshold {meta['mixed_support']}."
        + (
            f" Costs re-measured {meta['costs_measured']} (load {meta['costs_load']}) after a "
            "speed-up that changes no score."
            if "costs_measured" in meta
            else ""
        ),
        "",
        "**Faithfulness** (ERASER): drop in the predicted label's probability when the strongest "
        "supporting span is deleted (comprehensiveness, higher is better) or kept alone "
        "(sufficiency, lower is better), against a random span of the same length. "
        f"{meta['reviews']} test reviews sampled from every split.",
        "",
        header(
            "model",
            "level",
            "spans",
            "width (chars)",
            "comp. top",
            "comp. random",
            "ratio (mean)",
            "ratio (median)",
            "suff. top",
            "suff. random",
        ),
    ]
    full = {n: r for n, r in results["models"].items() if "faithfulness" in r}
    for name, r in full.items():
        for level in ("clause", "phrase"):
            f = r["faithfulness"].get(level)
            if not f:
                continue
            lines.append(
                f"| {name} | {level} | {f['n']} | {f['width_chars_median']:g} | "
                f"{f['comp_top_mean']:.3f} / {f['comp_top_median']:.3f} | "
                f"{f['comp_random_mean']:.3f} / {f['comp_random_median']:.3f} | "
                f"{f['comp_ratio_mean']}x | {f['comp_ratio_median']}x | "
                f"{f['suff_top_mean']:.3f} / {f['suff_top_median']:.3f} | "
                f"{f['suff_random_mean']:.3f} / {f['suff_random_median']:.3f} |"
            )
    lines += [
        "",
        "(mean / median over reviews.)",
        "",
        "**Cost** of `explain`, one review at a time, and **mixed reviews** (synthetic: a "
        "one-clause positive and a one-clause negative test review joined by 但是/不过/可是/但):",
        "",
        header(
            "model",
            "method",
            "plain ms",
            "explain ms",
            "ratio of medians",
            "median ratio",
            "mixed pairs",
            "praise > 0 and blame < 0",
            "both parts read right alone",
            "`mixed` set",
            "`mixed` on one-sided pairs",
        ),
    ]
    for name, r in results["models"].items():
        c, m = r["cost"], r.get("mixed_pairs")
        mixed = (
            f"{m['usable']} | {m['polarity_agreement']:.1%} | "
            f"{m['parts_read_right_alone']:.1%} | {m['mixed_recall']:.1%} | "
            f"{m['one_sided_fires']:.1%}"
            if m
            else "(cost only) | | | |"
        )
        lines.append(
            f"| {name} | `{r['method']}` | {c['plain_ms_median']} | {c['explain_ms_median']} | "
            f"{c['ratio_of_medians']}x | {c['ratio_median']}x | {mixed} |"
        )
    lines += [
        "",
        "**How often `mixed` fires** per test split (all sampled reviews / reviews with no "
        "contrast word, a proxy for one-sided ones):",
        "",
        "| model | " + " | ".join(next(iter(full.values()))["mixed_rates"]) + " |",
        "|---|" + "---:|" * len(next(iter(full.values()))["mixed_rates"]),
    ]
    for name, r in full.items():
        cells = [
            f"{v['fires_all']:.1%} / {v['fires_no_contrast_word']:.1%}"
            for v in r["mixed_rates"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "**Stability** (int8 batch-mate noise vs explanations):", ""]
    lines += [
        header(
            "model",
            "texts",
            "noise in P(Positive): median / p99 / max",
            "explained alone vs in a batch: same spans, max score diff",
            "median abs span score",
        )
    ]
    for name, r in full.items():
        s = r["stability"]
        lines.append(
            f"| {name} | {s['texts']} | {s['noise_prob_median']} / {s['noise_prob_p99']} / "
            f"{s['noise_prob_max']} | {s['explanation_same_spans']}, "
            f"{s['explanation_score_max_diff']:.1e} | {s['span_score_abs_median']} |"
        )
    examples = (
        next((r["mixed_rates"] for n, r in full.items() if n == "accurate"), None)
        or next(iter(full.values()))["mixed_rates"]
    )
    lines += ["", "Examples where `mixed` fired (accurate, or the first model run):", ""]
    for split, v in examples.items():
        for ex in v["examples"][:1]:
            clauses_ = "; ".join(f"{t} ({s:+.2f})" for t, s in ex["clauses"])
            lines.append(f"- {split}: {clauses_}")
    lines.append(MARK_END)
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else f"{MARK_BEGIN}\n{MARK_END}\n"
    if MARK_BEGIN not in text:
        text += f"\n{MARK_BEGIN}\n{MARK_END}\n"
    head, rest = text.split(MARK_BEGIN, 1)
    tail = rest.split(MARK_END, 1)[1]
    DOC.write_text(head + block + tail, encoding="utf-8")


def update_costs(args: argparse.Namespace) -> None:
    """Measure the costs again (after a speed-up) into an existing results file."""
    results = json.loads(args.out.read_text(encoding="utf-8"))
    test = read_split(args.data, "test")
    pool = [t for rows in test.values() for t, _ in rows]
    reviews = random.Random(args.seed).sample(pool, min(args.reviews, len(pool)))
    with tempfile.TemporaryDirectory(prefix="qinggan-explain-") as tmp:
        for name in args.models.split(","):
            log(f"{name}: cost on {args.cost_texts} reviews, one at a time")
            clf = load_model(name, Path(tmp))
            entry = results["models"].setdefault(name, {"cost_only": True})
            entry["method"] = clf.predict(["很好"], explain=True)[0].explanation.method
            entry["cost"] = cost(clf, reviews[: args.cost_texts])
    results["meta"]["costs_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["meta"]["costs_load"] = round(os.getloadavg()[0], 1)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    write_doc(render(results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="accurate,fast,ngram,converted")
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--per-split", type=int, default=300)
    parser.add_argument("--cost-texts", type=int, default=200)
    parser.add_argument("--stability-texts", type=int, default=300)
    parser.add_argument(
        "--sweep", action="store_true", help="also sweep the mixed threshold on dev"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/explain.md")
    parser.add_argument(
        "--render", action="store_true", help="only re-render docs/explain.md from --out"
    )
    parser.add_argument(
        "--cost-only", action="store_true", help="re-measure only the costs (into --out)"
    )
    args = parser.parse_args(argv)
    if args.render:
        write_doc(render(json.loads(args.out.read_text(encoding="utf-8"))))
        return
    if args.cost_only:
        update_costs(args)
        return
    test, dev = read_split(args.data, "test"), read_split(args.data, "dev")
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": f"{os.cpu_count()} CPUs",
            "load_before": round(os.getloadavg()[0], 1),
            "reviews": args.reviews,
            "mixed_support": MIXED_SUPPORT,
            "args": {k: str(v) for k, v in vars(args).items()},
        },
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="qinggan-explain-") as tmp:
        for name in args.models.split(","):
            results["models"][name] = run_model(name, args, test, dev, Path(tmp))
    results["meta"]["load_after"] = round(os.getloadavg()[0], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    block = render(results)
    print(block)
    if not args.no_doc:
        write_doc(block)


if __name__ == "__main__":
    main()
