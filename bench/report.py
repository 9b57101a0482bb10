"""Render ``docs/benchmarks.md`` from ``bench/results/*.json`` and ``bench/findings.md``.

python bench/report.py      # rewrite the page from the stored results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DOCS = BENCH.parent / "docs" / "benchmarks.md"
FINDINGS = BENCH / "findings.md"
BASELINE = "original"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.1f}×"


def _phase(entry: dict[str, Any], conns: int) -> dict[str, Any]:
    return entry.get("phases", {}).get(f"c{conns}", {})


def _p50(entry: dict[str, Any], conns: int) -> float | None:
    return _phase(entry, conns).get("latency_ms", {}).get("p50")


def _peak_rss(entry: dict[str, Any]) -> float | None:
    peaks = [p["memory_peak_mb"]["rss"] for p in entry.get("phases", {}).values()]
    return max(peaks) if peaks else None


def _peak_pss(entry: dict[str, Any]) -> float | None:
    peaks = [p["memory_peak_mb"]["pss"] for p in entry.get("phases", {}).values()]
    return max(peaks) if peaks else None


def serve_section(serve: dict[str, Any], agreement: float | None) -> list[str]:
    meta, systems = serve["meta"], serve["systems"]
    conns = meta["connections"]
    lines = [
        "## HTTP: the original stack vs qinggan serve (one run, side by side)",
        "",
        f"Run {meta['started']} – {meta.get('finished', '?')}; client `{meta['client']}` "
        f"(closed loop, client time-out {meta['client_timeout_s']:g} s), "
        f"{meta['duration_s']:g} s per "
        f"phase after a {meta['warmup_s']:g} s warm-up; {meta['texts']['count']} texts "
        f"(median {meta['texts'].get('chars_median', 0):.0f} chars, p95 "
        f"{meta['texts'].get('chars_p95', 0):.0f}) from {meta['texts']['source']}.",
        "",
    ]
    header = (
        "| system | first answer (s) | RSS idle / peak (MB) | PSS peak (MB) "
        "| sequential p50 / p95 (ms) |"
    )
    sep = "|---|---:|---:|---:|---:|"
    for c in conns:
        header += f" c={c}: req/s · p50 / p99 ms · errors (time-outs) |"
        sep += "---:|"
    lines += [header, sep]
    for name, entry in systems.items():
        if "error" in entry and "phases" not in entry:
            lines.append(f"| {name} | failed: {entry['error'].splitlines()[0][:80]} |")
            continue
        c1 = _phase(entry, 1).get("latency_ms", {})
        row = (
            f"| **{name}** | {_f(entry.get('time_to_first_answer_s'), 2)} | "
            f"{_f(entry.get('memory_idle_mb', {}).get('rss'), 0)} / {_f(_peak_rss(entry), 0)} | "
            f"{_f(_peak_pss(entry), 0)} | {_f(c1.get('p50'))} / {_f(c1.get('p95'))} |"
        )
        for c in conns:
            p = _phase(entry, c)
            lat = p.get("latency_ms", {})
            row += (
                f" {_f(p.get('rps'))} · {_f(lat.get('p50'), 0)} / {_f(lat.get('p99'), 0)} · "
                f"{p.get('errors', 'n/a')} ({p.get('timeouts', 'n/a')}) |"
            )
        lines.append(row)
    for name, note in meta.get("provenance", {}).items():
        if name.startswith("qinggan-") and isinstance(note, str):
            lines += ["", f"**{name}**: {note}"]
    lines += [""]

    base = systems.get(BASELINE)
    if base and "phases" in base:
        lines += [
            "### Ratios against the original (same run)",
            "",
            "| system | c=16 throughput | c=64 throughput | sequential p50 | peak RSS | "
            "time to first answer |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, entry in systems.items():
            if name == BASELINE or "phases" not in entry:
                continue
            c16 = _ratio(_phase(entry, 16).get("rps"), _phase(base, 16).get("rps"))
            c64 = _ratio(_phase(entry, 64).get("rps"), _phase(base, 64).get("rps"))
            seq = _ratio(_p50(base, 1), _p50(entry, 1))
            rss = _ratio(_peak_rss(base), _peak_rss(entry))
            start = _ratio(base.get("time_to_first_answer_s"), entry.get("time_to_first_answer_s"))
            lines.append(
                f"| {name} | {c16} more | {c64} more | {seq} faster | {rss} less | {start} sooner |"
            )
        lines.append("")

    lines += ["### qinggan over HTTP vs the same bundle in process", ""]
    lines += [
        "| system | in-process single p50, before / after the HTTP run (ms) | HTTP c=1 p50 (ms) | "
        "gap to the mean (ms) | in-process best "
        "batched (texts/s) | in-process, windows of 16 (texts/s) | HTTP c=16 (req/s) | "
        "HTTP / best batched | HTTP / windows of 16 | c=16 p99 / p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in systems.items():
        ref = entry.get("in_process")
        if not ref or "phases" not in entry:
            continue
        before = ref["single"]["p50_ms"]
        after = entry.get("in_process_after", {}).get("single", {}).get("p50_ms")
        single = (before + after) / 2 if after is not None else before
        singles = f"{_f(before, 2)} / {_f(after, 2)}" if after is not None else _f(before, 2)
        http1 = _phase(entry, 1).get("latency_ms", {}).get("p50")
        best = ref["batched_best"]
        c16 = _phase(entry, 16)
        lat16 = c16.get("latency_ms", {})
        tail = lat16.get("p99", 0) / lat16["p50"] if lat16.get("p50") else None
        win = ref.get("windows_16", {}).get("texts_per_s")
        rps = c16.get("rps")
        lines.append(
            f"| {name} ({ref.get('variant')}) | {singles} | {_f(http1, 2)} | "
            f"{_f(http1 - single if http1 else None, 2)} | {_f(best['texts_per_s'])} (batch "
            f"{best['batch_size']}) | {_f(win)} | {_f(rps)} | "
            f"{_f(100 * rps / best['texts_per_s'] if rps else None, 0)} % | "
            f"{_f(100 * rps / win if rps and win else None, 0)} % | {_f(tail, 2)} |"
        )
    lines.append("")
    ceilings = [
        (name, entry["trivial_endpoint"])
        for name, entry in systems.items()
        if "trivial_endpoint" in entry
    ]
    if ceilings:
        lines += [
            "**Load-generator ceiling.** The same client against a trivial endpoint of the same "
            "server in the same run (so this bounds client *and* HTTP stack):",
            "",
        ]
        for name, ceil in ceilings:
            parts = [
                f"c={k[1:]}: {_f(v['rps'], 0)} req/s (p50 {_f(v['latency_ms'].get('p50'), 2)} ms)"
                for k, v in ceil.items()
                if isinstance(v, dict)
            ]
            lines.append(f"- {name}, `{ceil['path']}`: " + "; ".join(parts))
        lines.append("")
    if agreement is not None:
        lines += [
            f"int8 figures above come with int8/fp32 label agreement **{agreement:.1%}** on the "
            "same model (see the engine section).",
            "",
        ]
    return lines


def engine_section(engine: dict[str, Any]) -> list[str]:
    variants = engine["variants"]
    agree = engine.get("agreement", {})
    lines = [
        "## In-process engine curves",
        "",
        f"{engine.get('model_label', engine['model'])}, {engine['threads']} ONNX Runtime threads, "
        f"run {engine['started']}.",
        "",
        "![texts/s vs batch size and vs length](../bench/results/engine.png)",
        "",
    ]
    if agree:
        lines += [
            f"**int8 vs fp32 label agreement: {agree['label_agreement']:.1%}** "
            f"on {agree['n']} real "
            f"texts (max |Δp| {agree['max_abs_prob_diff']}, mean {agree['mean_abs_prob_diff']}; "
            f"median fp32 margin |p₊−p₋| {agree['fp32_median_margin']}).",
            "",
        ]
    names = list(variants)
    bs = sorted({int(b) for v in variants.values() for b in v["batch_size_curve"]})
    lines += [
        "texts/s by batch size, texts of 64 tokens (no padding: the batching gain alone):",
        "",
        "| batch size | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for b in bs:
        lines.append(
            f"| {b} | "
            + " | ".join(_f(variants[n]["batch_size_curve"].get(str(b))) for n in names)
            + " |"
        )
    lens = sorted({int(n) for v in variants.values() for n in v["length_curve"]})
    lines += [
        "",
        "texts/s for batches of 8 texts of a fixed token length:",
        "",
        "| tokens | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for n in lens:
        lines.append(
            f"| {n} | "
            + " | ".join(_f(variants[v]["length_curve"].get(str(n))) for v in names)
            + " |"
        )
    padding = engine.get("padding")
    if padding:
        windows = [k for k in padding if k not in ("texts", "mean_tokens")]
        cols = list(padding[windows[0]])
        lines += [
            "",
            f"Padded tokens ÷ real tokens for the {padding['texts']} texts (mean "
            f"{padding['mean_tokens']} tokens), when batches are planned from windows of *w* "
            "texts (*w* = requests in flight; `all` = the whole set sorted at once) under each "
            "padded-token budget (`max_batch_tokens`, batch size ≤ 32). Computed, not timed:",
            "",
            "| window | " + " | ".join(f"budget {c}" for c in cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for w in windows:
            lines.append(f"| {w} | " + " | ".join(f"{padding[w][c]:.2f}" for c in cols) + " |")
    budgets = sorted(
        {int(b) for v in variants.values() for b in v.get("window16_by_token_budget", {})}
    )
    if budgets:
        lines += [
            "",
            "texts/s when texts arrive 16 at a time (what the server can sort with 16 requests in "
            "flight), by padded-token budget per model batch (`--max-batch-tokens`):",
            "",
            "| token budget | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for b in budgets:
            cells = [_f(variants[v].get("window16_by_token_budget", {}).get(str(b))) for v in names]
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Single-text latency (real texts): "
        + "; ".join(
            f"{n} p50 {_f(v['single_ms']['p50'], 2)} ms / p95 {_f(v['single_ms']['p95'], 2)} ms"
            for n, v in variants.items()
        )
        + ".",
        "",
    ]
    sweeps = {n: v["session_options"] for n, v in variants.items() if "session_options" in v}
    if sweeps:
        lines += [
            "### ONNX Runtime session options (what each setting buys)",
            "",
            "| setting | "
            + " | ".join(f"{n} single p50 ms | {n} batch-32 texts/s" for n in sweeps)
            + " |",
            "|---|" + "---:|---:|" * len(sweeps),
        ]
        settings = list(next(iter(sweeps.values())))
        for s in settings:
            row = f"| {s} |"
            for sweep in sweeps.values():
                m = sweep.get(s, {})
                single = _f(m.get("single_ms", {}).get("p50"), 2)
                row += f" {single} | {_f(m.get('batch32_texts_per_s'))} |"
            lines.append(row)
        lines.append("")
    return lines


TARGET_P50_MS = {"accurate": 10.0, "fast": 3.0}  # the model card's single-review targets
TARGET_TEXTS_PER_S = {"fast": 1000.0}  # and fast's batch rate


def builtins_section(builtins: dict[str, Any]) -> list[str]:
    """The built-in models one review at a time (``bench/builtins.py``)."""
    meta = builtins["meta"]
    lines = [
        "## Built-in models, one review at a time",
        "",
        f"`bench/builtins.py`, {meta['started']}: {meta['rounds']} alternating rounds of "
        f"{meta['corpus']['count']} real reviews each (median "
        f"{meta['corpus']['chars_median']:.0f} characters), in process, "
        f"{meta['threads']} ONNX Runtime threads; median over rounds (range).",
        "",
        "| model | single p50 (ms) | single p95 (ms) | one batch of all texts (texts/s) | target |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in builtins["models"].items():
        lo, hi = r["single_p50_ms_range"]
        rlo, rhi = r["texts_per_s_range"]
        verdicts = []
        if (target := TARGET_P50_MS.get(name)) is not None:
            verdicts.append(
                f"p50 <= {target:g} ms: {'yes' if r['single_p50_ms'] <= target else 'no'}"
            )
        if (rate := TARGET_TEXTS_PER_S.get(name)) is not None:
            verdicts.append(
                f">= {rate:,.0f} texts/s: {'yes' if r['texts_per_s'] >= rate else 'no'}"
            )
        verdict = "; ".join(verdicts) or "–"
        lines.append(
            f"| `{name}` | {_f(r['single_p50_ms'], 2)} ({_f(lo, 2)}–{_f(hi, 2)}) "
            f"| {_f(r['single_p95_ms'], 2)} | {_f(r['texts_per_s'])} ({_f(rlo)}–{_f(rhi)}) "
            f"| {verdict} |"
        )
    return [*lines, "", f"Command: `{' '.join(meta['argv'])}`", ""]


def machine_section(serve: dict[str, Any] | None, engine: dict[str, Any] | None) -> list[str]:
    lines = ["## Machine, conditions and commands", ""]
    if serve:
        meta = serve["meta"]
        m = meta["machine"]
        lines += [
            f"- CPU: {m['cpu_model']}, {m['cpus']} cores visible, "
            f"{m.get('memory_gb', '?')} GB RAM; "
            f"{m['platform']}, Python {m['python']}.",
            f"- SIMD flags: {', '.join(m['simd_flags'])}; VNNI: {'yes' if m['vnni'] else 'no'}.",
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
            "- qinggan serve options: `"
            + " ".join(f"{k} {v}".strip() for k, v in meta["serve_options"].items())
            + "`.",
            f"- Model: {json.dumps(meta.get('provenance', {}).get('model'), ensure_ascii=False)}.",
        ]
        busy = meta.get("busy_processes_at_start") or []
        if busy:
            lines.append(
                "- Also running when the HTTP run started (CPU % over 1 s): "
                + "; ".join(f"`{b['cmd'][:60]}` {b['cpu_percent']} %" for b in busy)
                + "."
            )
        loads = [
            f"{name} {e.get('loadavg_before', ['?'])[0]}→{e.get('loadavg_after', ['?'])[0]}"
            for name, e in serve["systems"].items()
        ]
        lines.append("- 1-minute load average before→after each system: " + ", ".join(loads) + ".")
        if meta.get("note"):
            lines.append(f"- Note: {meta['note']}")
        lines += ["", "Commands:", "", "```bash", " ".join(meta["argv"])]
        if engine:
            lines.append(" ".join(engine["argv"]))
        lines += [
            "python bench/report.py   # re-render this page from bench/results/*.json",
            "```",
            "",
        ]
    return lines


def render() -> str:
    serve = _load("serve.json")
    engine = _load("engine.json")
    agreement = (engine or {}).get("agreement", {}).get("label_agreement")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results/serve.json`, "
        "`bench/results/engine.json` and `bench/results/builtins.json`; do not edit by hand "
        "(edit `bench/findings.md`).",
        "",
    ]
    if FINDINGS.is_file():
        lines += [FINDINGS.read_text(encoding="utf-8").rstrip(), ""]
    if serve:
        lines += serve_section(serve, agreement)
    if engine:
        lines += engine_section(engine)
    builtins = _load("builtins.json")
    if builtins:
        lines += builtins_section(builtins)
    lines += machine_section(serve, engine)
    return "\n".join(lines).rstrip() + "\n"


def write_docs() -> Path:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(render(), encoding="utf-8")
    return DOCS


if __name__ == "__main__":
    print(write_docs(), file=sys.stderr)
