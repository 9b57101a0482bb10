"""Side-by-side HTTP benchmark: the original Flask/gunicorn stack vs ``qinggan serve`` (issue 7).

One run, one machine, one model shape, one set of texts. For each system it measures time
from process start to the first 200, resident memory of the process tree (idle and peak
under load), sequential single-request p50/p95, and throughput with p50/p99 and errors and
time-outs under 1, 16 and 64 connections. For the qinggan systems it also measures, in this
process and before the server starts, in-process single-text latency and best batched
throughput of the same bundle, the references for the HTTP overhead targets.

    python bench/serve.py                    # full run (base-shaped model, all systems)
    python bench/serve.py --smoke --out DIR  # seconds: tiny test bundle, qinggan only, httpx

Results go to ``bench/results/serve.json`` and ``docs/benchmarks.md`` (via ``report.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import systems  # noqa: E402
from corpus import DEFAULT_DATA, load_texts  # noqa: E402

BUILTIN_SYSTEMS = ("qinggan-ngram", "qinggan-fast", "qinggan-balanced", "qinggan-accurate")
SMOKE_TEXTS = [
    "这家酒店服务很好，下次还来",
    "质量太差了，再也不买",
    "物流很快，包装也很干净，满意",
    "外卖送得太慢了，味道也一般，失望",
    "性价比不错，推荐",
    "房间很脏，前台态度恶劣，糟糕",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- inputs -----------------------------------------------------------------------------


def request_bodies(texts: list[str]) -> list[bytes]:
    return [json.dumps({"text": t}, ensure_ascii=False).encode("utf-8") for t in texts]


# --- in-process references --------------------------------------------------------------


def in_process_reference(
    model: str,
    variant: str | None,
    threads: int,
    texts: list[str],
    budget_s: float,
    max_batch_tokens: int = 8192,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Single-text latency and best length-sorted batched throughput of one bundle, in process."""
    import qinggan

    result: dict[str, Any] = {"threads": threads}
    clf = qinggan.load(model, variant=variant, threads=threads)
    result["variant"] = clf.variant
    if base is not None:  # same bundle, other server options: only the windows differ
        result.update({k: v for k, v in base.items() if not k.startswith("windows_")})
    else:
        result.update(_single_and_batched(clf, texts, budget_s))
    best = result["batched_best"]
    # What a server with ``c`` requests in flight can do at best: sort and batch windows of c.
    clf.batch_size, clf.max_batch_tokens = 32, max_batch_tokens
    for window in (16,):
        n = min(len(texts), max(4 * window, int(best["texts_per_s"] * budget_s / 6)))
        n -= n % window
        t0 = time.perf_counter()
        for i in range(0, n, window):
            clf.predict(texts[i : i + window])
        result[f"windows_{window}"] = {
            "n": n,
            "texts_per_s": round(n / (time.perf_counter() - t0), 2),
            "max_batch_tokens": clf.max_batch_tokens,
        }
    del clf
    gc.collect()
    return result


def single_text_reference(
    model: str, variant: str | None, threads: int, texts: list[str], n: int
) -> dict[str, Any]:
    """p50/p95 of ``predict([text])`` over the first ``n`` texts, as in the first reference."""
    import qinggan

    clf = qinggan.load(model, variant=variant, threads=threads)
    for text in texts[:5]:
        clf.predict([text])
    single = _single_text(clf, texts[:n])
    del clf
    gc.collect()
    return {"single": single}


def _single_text(clf, texts: list[str], deadline: float = math.inf) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """p50/p95 ms of ``predict([text])`` in order, stopping past ``deadline`` (>= 20 texts)."""
    latencies: list[float] = []
    for text in texts:
        t0 = time.perf_counter()
        clf.predict([text])
        latencies.append(time.perf_counter() - t0)
        if len(latencies) >= 20 and time.perf_counter() > deadline:
            break
    summary = loadgen.latency_summary(latencies)
    return {"n": len(latencies), "p50_ms": summary["p50"], "p95_ms": summary["p95"]}


def _single_and_batched(clf, texts: list[str], budget_s: float) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result: dict[str, Any] = {}
    result["single"] = _single_text(clf, texts, deadline=time.perf_counter() + budget_s / 3)
    best: dict[str, Any] = {}
    clf.batch_size = 32
    t0 = time.perf_counter()
    clf.predict(texts[:64])
    rate = 64 / (time.perf_counter() - t0)
    n = int(min(len(texts), max(128, rate * budget_s / 4)))
    for batch_size in (8, 16, 32):
        clf.batch_size = batch_size
        t0 = time.perf_counter()
        clf.predict(texts[:n])
        texts_per_s = n / (time.perf_counter() - t0)
        result[f"batched_{batch_size}"] = {"n": n, "texts_per_s": round(texts_per_s, 2)}
        if texts_per_s > best.get("texts_per_s", 0):
            best = {"batch_size": batch_size, "n": n, "texts_per_s": round(texts_per_s, 2)}
    result["batched_best"] = best
    return result


# --- one system ---------------------------------------------------------------------------


def warm_up(
    gen: loadgen.LoadGenerator, system: systems.System, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Load the server until it is warm: rounds of ``--warmup`` seconds until one has no errors
    and a p50 within 20 % of the round before (the original loads its model lazily in each of
    its three workers), at most six rounds."""
    rounds: list[dict[str, Any]] = []
    for _ in range(1 if args.smoke else 6):
        result = gen.run(
            system.url,
            connections=args.warmup_connections,
            duration_s=args.warmup,
            total_requests=args.smoke_requests,
        )
        p50 = result.latency_ms.get("p50")
        rounds.append(
            {"ok": result.ok, "rps": round(result.rps, 2), "p50_ms": p50, "errors": result.errors}
        )
        log(f"{system.name}: warm-up round: {rounds[-1]}")
        if len(rounds) >= 2 and result.ok and not result.errors and rounds[-2]["p50_ms"]:
            if p50 <= 1.2 * rounds[-2]["p50_ms"]:
                break
    return rounds


def measure_system(
    system: systems.System,
    gen: loadgen.LoadGenerator,
    args: argparse.Namespace,
    first_body: bytes,
    log_dir: Path,
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": system.description, "command": " ".join(system.argv)}
    out["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    log(f"{system.name}: starting: {out['command']}")
    with systems.Running(system, log_dir / f"{system.name}.log") as running:
        out["time_to_first_answer_s"] = round(
            running.wait_first_answer(first_body, args.start_timeout), 3
        )
        log(f"{system.name}: first 200 after {out['time_to_first_answer_s']} s")
        out["warmup"] = warm_up(gen, system, args)
        time.sleep(1.0)
        rss, pss = running.memory_mb()
        out["memory_idle_mb"] = {"rss": round(rss, 1), "pss": round(pss, 1)}
        phases: dict[str, Any] = {}
        for connections in args.connections:
            with running.sampler() as sampler:
                result = gen.run(
                    system.url,
                    connections=connections,
                    duration_s=args.duration,
                    total_requests=args.smoke_requests,
                )
            phase = result.to_dict()
            phase["memory_peak_mb"] = {
                "rss": round(sampler.peak_rss_mb, 1),
                "pss": round(sampler.peak_pss_mb, 1),
            }
            phases[f"c{connections}"] = phase
            lat = phase["latency_ms"]
            log(
                f"{system.name}: c={connections}: {phase['rps']:.1f} req/s, "
                f"p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
                f"errors {phase['errors']} (timeouts {phase['timeouts']}), "
                f"peak RSS {phase['memory_peak_mb']['rss']} MB"
            )
            if running.popen.poll() is not None:
                raise RuntimeError(f"{system.name} died under load:\n{running.tail()}")
        out["phases"] = phases
        if system.trivial_path:
            ceiling = {}
            trivial_url = f"http://127.0.0.1:{system.port}{system.trivial_path}"
            for connections in (16, 64):
                ceiling[f"c{connections}"] = gen.run(
                    trivial_url,
                    connections=connections,
                    duration_s=max(1.0, args.duration / 4),
                    total_requests=args.smoke_requests,
                    method="GET",
                ).to_dict()
            out["trivial_endpoint"] = {"path": f"GET {system.trivial_path}", **ceiling}
            log(f"{system.name}: GET {system.trivial_path} c=16: {ceiling['c16']['rps']:.0f} req/s")
        rss, pss = running.memory_mb()
        out["memory_after_mb"] = {"rss": round(rss, 1), "pss": round(pss, 1)}
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


# --- environment ----------------------------------------------------------------------------


def machine_description() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lscpu.splitlines())
    )
    info["cpu_model"] = fields.get("Model name", platform.processor())
    info["cpus"] = os.cpu_count()
    flags = set(fields.get("Flags", "").split())
    info["simd_flags"] = sorted(
        f for f in flags if f.startswith(("avx512", "avx2", "avx_vnni", "amx", "fma"))
    )
    info["vnni"] = bool({"avx512_vnni", "avx_vnni"} & flags)
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        pass
    versions = {}
    for module in ("onnxruntime", "tokenizers", "numpy", "uvicorn", "fastapi", "qinggan"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = "n/a"
    info["versions"] = versions
    return info


def busy_processes(exclude: set[int], top: int = 8) -> list[dict[str, Any]]:
    """Other processes using CPU right now (sampled over one second): what else was running."""
    import psutil

    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid in exclude:
            continue
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except psutil.Error:
            pass
    time.sleep(1.0)
    busy = []
    for proc in procs:
        try:
            pct = proc.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 5:
            cmd = " ".join(proc.info["cmdline"] or [proc.info["name"]])[:120]
            busy.append({"pid": proc.pid, "cpu_percent": round(pct), "cmd": cmd})
    return sorted(busy, key=lambda p: -p["cpu_percent"])[:top]


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dir with */test.csv.gz")
    parser.add_argument("--texts", type=int, default=2000, help="texts sampled (default 2000)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per system")
    parser.add_argument("--warmup-connections", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=10.0, help="client time-out, seconds")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64]
    )
    parser.add_argument(
        "--systems",
        default=",".join(("original", "qinggan-fp32", "qinggan-int8", *BUILTIN_SYSTEMS)),
        help="comma-separated subset of original, qinggan-fp32, qinggan-int8 and the built-in "
        "models qinggan-ngram, qinggan-fast, qinggan-balanced, qinggan-accurate",
    )
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--shape", choices=("base", "small"), default="base")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for qinggan")
    parser.add_argument(
        "--serve-opt",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="extra 'qinggan serve' option, e.g. --serve-opt=--max-wait-ms=2 (repeatable)",
    )
    parser.add_argument(
        "--tuned-opt",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="also run the --tuned-systems as '<name>-tuned' with these extra serve options",
    )
    parser.add_argument(
        "--tuned-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the '-tuned' twins, e.g. QINGGAN_ORT_SPINNING=0 (repeatable)",
    )
    parser.add_argument(
        "--tuned-systems",
        default="qinggan-int8",
        help="comma-separated qinggan systems that get a '-tuned' twin (default qinggan-int8)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip in-process references")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "serve.json")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--note", default="", help="what else was running on the machine (goes into the report)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long CI check: tiny test bundle, qinggan only, httpx, a few requests",
    )
    args = parser.parse_args(argv)
    args.smoke_requests = None
    if args.smoke:
        args.systems = "qinggan-tiny"
        args.client = "httpx" if args.client == "auto" else args.client
        args.duration, args.warmup, args.texts = 5.0, 1.0, 50
        args.smoke_requests = 12
        args.connections = [1, 4]
        args.no_docs = True
        if args.out == BENCH / "results" / "serve.json":
            raise SystemExit(
                "error: --smoke needs --out (smoke results never overwrite the real ones)"
            )
    return args


def serve_options(args: argparse.Namespace, tuned: bool = False) -> dict[str, str]:
    options = {"--threads": str(args.threads)}
    for item in [*args.serve_opt, *(args.tuned_opt if tuned else [])]:
        flag, _, value = item.partition("=")
        options[flag] = value
    return options


def build_systems(args: argparse.Namespace, workdir: Path) -> tuple[list[systems.System], dict]:
    """The systems to run, plus model provenance for the report."""
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    chosen: list[systems.System] = []
    provenance: dict[str, Any] = {}
    options = serve_options(args)
    if args.smoke:
        from qinggan.testing import make_tiny_bundle

        bundle = make_tiny_bundle(workdir / "tiny-bundle")
        chosen.append(
            systems.qinggan_system(
                "qinggan-tiny", str(bundle.path), systems.free_port(), variant=None, options=options
            )
        )
        provenance["model"] = "qinggan.testing.make_tiny_bundle (bag of characters)"
        return chosen, provenance

    import models

    shape = models.BASE if args.shape == "base" else models.SMALL
    needs_base = any(s in wanted for s in ("original", "qinggan-fp32", "qinggan-int8"))
    if needs_base:
        log(f"preparing the random {shape.key} checkpoint and bundle (cached in {models.CACHE})")
        prepared = models.prepare(shape)
        provenance["model"] = {
            "shape": shape.__dict__,
            "converter": prepared.converter,
            "conversion_parity": prepared.parity,
        }
    for name in wanted:
        port = systems.free_port()
        if name == "original":
            systems.ensure_baseline_venv(log)
            chosen.append(systems.baseline_system(prepared.hf_dir, port))
        elif name in ("qinggan-fp32", "qinggan-int8"):
            variant = name.rsplit("-", 1)[1]
            chosen.append(
                systems.qinggan_system(
                    name, str(prepared.bundle_dir), port, variant=variant, options=options
                )
            )
        elif name in BUILTIN_SYSTEMS:
            from qinggan.bundle import builtin_models

            builtin = name.split("-", 1)[1]
            if builtin not in builtin_models():
                provenance[name] = f"n/a: no built-in {builtin!r} model in src/qinggan/models/"
                log(f"{name}: n/a (no built-in {builtin!r} model)")
                continue
            chosen.append(
                systems.qinggan_system(name, builtin, port, variant=None, options=options)
            )
        else:
            raise SystemExit(f"error: unknown system {name!r}")
        if (args.tuned_opt or args.tuned_env) and name in args.tuned_systems.split(","):
            base = chosen[-1]
            model = base.argv[base.argv.index("--model") + 1]
            variant = (
                base.argv[base.argv.index("--variant") + 1] if "--variant" in base.argv else None
            )
            tuned = systems.qinggan_system(
                f"{name}-tuned",
                model,
                systems.free_port(),
                variant=variant,
                options=serve_options(args, tuned=True),
            )
            tuned.env = dict(item.split("=", 1) for item in args.tuned_env)
            tuned.description += ", tuned: " + " ".join([*args.tuned_opt, *args.tuned_env])
            chosen.append(tuned)
    return chosen, provenance


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tool = args.client
    if tool == "auto":
        tool = "wrk" if loadgen.wrk_available() else "httpx"
    if args.smoke and not args.data.is_dir():
        texts, text_info = SMOKE_TEXTS * 8, {"source": "built-in smoke texts", "count": 48}
    else:
        texts, text_info = load_texts(args.data, args.texts)
    bodies = request_bodies(texts)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "argv": ["python", "bench/serve.py", *(argv if argv is not None else sys.argv[1:])],
            "smoke": args.smoke,
            "client": tool,
            "client_timeout_s": args.timeout,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "texts": text_info,
            "threads": args.threads,
            "serve_options": serve_options(args),
            "tuned_options": [*args.tuned_opt, *args.tuned_env],
            "machine": machine_description(),
            "note": args.note,
        },
        "systems": {},
    }
    if not args.smoke:
        results["meta"]["busy_processes_at_start"] = busy_processes({os.getpid()})
    gen = loadgen.LoadGenerator(tool, bodies, args.timeout)
    with tempfile.TemporaryDirectory(prefix="qinggan-bench-") as tmp:
        workdir = Path(tmp)
        chosen, provenance = build_systems(args, workdir)
        results["meta"]["provenance"] = provenance
        for system in chosen:
            entry: dict[str, Any] = {}
            if not args.no_reference and system.name != "original":
                log(f"{system.name}: in-process reference")
                model = system.argv[system.argv.index("--model") + 1]
                variant = (
                    system.argv[system.argv.index("--variant") + 1]
                    if "--variant" in system.argv
                    else None
                )
                tuned = system.name.endswith("-tuned")
                options = serve_options(args, tuned=tuned)
                base = system.name.removesuffix("-tuned")
                entry["in_process"] = in_process_reference(
                    model,
                    variant,
                    args.threads,
                    texts,
                    budget_s=6 if args.smoke else 45,
                    max_batch_tokens=int(options.get("--max-batch-tokens", 8192)),
                    base=results["systems"].get(base, {}).get("in_process") if tuned else None,
                )
                log(f"{system.name}: in-process {entry['in_process']}")
            try:
                entry.update(measure_system(system, gen, args, bodies[0], workdir))
            except RuntimeError as exc:
                log(f"{system.name}: FAILED: {exc}")
                entry["error"] = str(exc)
            if "in_process" in entry and "error" not in entry:
                # the same single-text loop again, after the HTTP phases: the machine's drift
                # between the reference and the HTTP run becomes visible in the table
                entry["in_process_after"] = single_text_reference(
                    model, variant, args.threads, texts, entry["in_process"]["single"]["n"]
                )
                log(f"{system.name}: in-process after {entry['in_process_after']}")
            results["systems"][system.name] = entry
    gen.close()
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    log(f"wrote {args.out}")
    if not args.no_docs:
        import report

        report.write_docs()
        log(f"wrote {report.DOCS}")
    failed = [name for name, entry in results["systems"].items() if "error" in entry]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
