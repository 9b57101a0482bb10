"""File-scoring benchmark: rows/s and peak memory of ``qinggan predict --input`` by file size,
and the Ray engine against the in-process engine. Prints a table and writes ``docs/scale.md``.

Inputs are CSV files of real reviews read at bench time from ``../shared/data/*/*.csv.gz``
(cycled to the requested row count, written to a scratch directory, never to the repo).
Every measurement is a fresh ``qinggan predict`` process; its peak RSS comes from
``wait4`` (the process itself) and from polling the whole process tree with psutil (which
includes Ray's raylet and workers). rows/s is the CLI's own figure: rows scored / time
from the first chunk to the renamed output (model loading and Ray start-up excluded; the
wall column includes them).

    nice -n 10 python bench/files.py --model accurate --sizes 10000,100000,1000000 \
        --ray-rows 200000
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("QINGGAN_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Result:
    label: str
    rows: int
    engine: str
    wall_s: float
    rows_per_s: float
    rss_mb: float
    tree_rss_mb: float
    command: str


def load_texts(data_dir: Path) -> list[str]:
    files = sorted(data_dir.glob("*/*.csv.gz"))
    if not files:
        raise SystemExit(f"error: no */*.csv.gz under {data_dir} (pass --data)")
    texts: list[str] = []
    for file in files:
        with gzip.open(file, "rt", encoding="utf-8", newline="") as fh:
            texts += [row["text"] for row in csv.DictReader(fh) if row["text"].strip()]
    random.Random(7).shuffle(texts)
    return texts


def write_input(path: Path, texts: list[str], rows: int) -> Path:
    if path.exists():
        return path
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])
    return path


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(label: str, rows: int, engine: str, command: list[str]) -> Result:
    """Run ``command``; wall time, the CLI's rows/s, own peak RSS and process-tree peak RSS."""
    started = time.perf_counter()
    popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        try:
            proc = psutil.Process(popen.pid)
            while not done.is_set():
                peak = max(peak, tree_rss(proc))
                time.sleep(0.2)
        except psutil.Error:
            pass

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stderr = popen.stderr.read() if popen.stderr else ""
    _, status, usage = os.wait4(popen.pid, 0)
    popen.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    wall = time.perf_counter() - started
    if popen.returncode != 0:
        raise SystemExit(f"error: {shlex.join(command)} failed:\n{stderr}")
    match = re.search(r"\(([\d,]+) rows/s\)", stderr)
    rate = float(match.group(1).replace(",", "")) if match else rows / wall
    return Result(
        label=label,
        rows=rows,
        engine=engine,
        wall_s=wall,
        rows_per_s=rate,
        rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        tree_rss_mb=peak / 2**20,
        command=shlex.join(["qinggan", *command[3:]]),
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(results: list[Result]) -> str:
    lines = [
        "| run | engine | rows | rows/s | wall s | peak RSS (MiB) | process tree peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.engine} | {r.rows:,} | {r.rows_per_s:,.0f} | {r.wall_s:.1f} | "
            f"{r.rss_mb:,.0f} | {r.tree_rss_mb:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle path or built-in name")
    parser.add_argument("--variant", default=None, help="int8 or fp32 (default: the bundle's)")
    parser.add_argument(
        "--section", default="files", help="doc section to (re)write: <!-- bench:SECTION:start -->"
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument(
        "--ray-rows", type=int, default=0, help="rows for Ray vs in-process (0: skip)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--output-format", default="parquet", choices=["parquet", "csv", "jsonl"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch dir (default: a temp dir)"
    )
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "scale.md")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument(
        "--note", default="", help="a line added to the doc (e.g. load on the machine)"
    )
    parser.add_argument(
        "--serve-rss",
        type=float,
        default=0,
        metavar="SECONDS",
        help="instead: measure `qinggan serve` RSS idle and under SECONDS of load (deploy sizing)",
    )
    args = parser.parse_args()

    if args.model is None:
        from qinggan.bundle import builtin_models

        builtins = builtin_models()
        if not builtins:
            raise SystemExit("error: no built-in model installed; pass --model PATH")
        args.model = "accurate" if "accurate" in builtins else next(iter(builtins))
    from qinggan.bundle import load_bundle, resolve_model

    bundle = load_bundle(resolve_model(args.model))
    m = bundle.manifest
    if m.models:
        variant = args.variant or m.preferred_variant
        size = f"{bundle.model_path(variant).stat().st_size / 1e6:.0f} MB ONNX"
    else:  # an ensemble of other bundles
        variant, size = "of the members", str(m.source.get("members", "ensemble"))
    model_desc = f"`{m.name}` ({args.model}; variant {variant}, max_length {m.max_length}, {size})"
    texts = load_texts(args.data)
    if args.serve_rss:
        serve_rss(args, texts, model_desc)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tmp = tempfile.TemporaryDirectory(prefix="qinggan-bench-") if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "qinggan.cli", "predict", "-m", str(args.model)]
    if args.variant:
        base += ["--variant", args.variant]
    common = ["--chunk-size", str(args.chunk_size), "--no-resume"]
    results: list[Result] = []
    try:
        for rows in sizes:
            src = write_input(workdir / f"in-{rows}.csv", texts, rows)
            out = workdir / f"out-{rows}.{args.output_format}"
            cmd = [*base, "--threads", str(args.threads), "-i", str(src), "-o", str(out), *common]
            results.append(measure(f"{rows:,} rows", rows, f"local, {args.threads} threads", cmd))
            print(table(results[-1:]).splitlines()[-1], flush=True)
        if args.ray_rows:
            rows = args.ray_rows
            src = write_input(workdir / f"in-{rows}.csv", texts, rows)
            out = workdir / f"out-ray-{rows}.{args.output_format}"
            local = [*base, "--threads", str(args.threads), "-i", str(src), "-o", str(out), *common]
            results.append(measure("Ray vs local", rows, f"local, {args.threads} threads", local))
            print(table(results[-1:]).splitlines()[-1], flush=True)
            ray_cmd = [
                *base, "--engine", "ray", "--concurrency", str(args.threads), "--threads", "1",
                "-i", str(src), "-o", str(out), *common,
            ]  # fmt: skip
            results.append(
                measure("Ray vs local", rows, f"ray, {args.threads} actors × 1 thread", ray_cmd)
            )
            print(table(results[-1:]).splitlines()[-1], flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()

    report = table(results)
    print(report)
    if args.no_doc:
        return
    machine = (
        f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores available, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )
    niceness = os.nice(0)  # as run: the doc shows the command's real priority
    command = (f"nice -n {niceness} " if niceness > 0 else "") + "python bench/files.py "
    command += shlex.join(sys.argv[1:])
    notes = []
    if len(results) >= 2 and len(sizes) >= 2:
        first, last = results[0], results[len(sizes) - 1]
        notes.append(
            f"- Peak RSS from {first.rows:,} to {last.rows:,} rows: {first.rss_mb:,.0f} → "
            f"{last.rss_mb:,.0f} MiB ({last.rss_mb - first.rss_mb:+,.0f} MiB)."
        )
    if args.ray_rows:
        local_r, ray_r = results[-2], results[-1]
        notes.append(
            f"- Ray at {args.ray_rows:,} rows: {ray_r.rows_per_s / local_r.rows_per_s:.0%} of "
            f"in-process throughput ({ray_r.rows_per_s:,.0f} vs {local_r.rows_per_s:,.0f} rows/s)."
        )
    if args.note:
        notes.append(f"- {args.note}")
    measured = MEASURED.format(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        model=model_desc,
        machine=machine,
        command=command,
        table=report,
        notes="\n".join(notes),
        fmt=args.output_format,
        chunk=args.chunk_size,
    )
    text = args.doc.read_text(encoding="utf-8") if args.doc.exists() else ""
    start, end = f"<!-- bench:{args.section}:start -->", f"<!-- bench:{args.section}:end -->"
    if start in text and end in text:
        text = text[: text.index(start) + len(start)] + "\n" + measured + text[text.index(end) :]
    else:
        text = (text or "# Scoring files at scale\n") + f"\n{start}\n{measured}{end}\n"
    args.doc.write_text(text, encoding="utf-8")
    print(f"wrote {args.doc}")


def serve_rss(args: argparse.Namespace, texts: list[str], model_desc: str) -> None:
    """RSS of `qinggan serve` when idle and at its peak under load from 8 client threads
    each posting full /v1/analyze batches of the longest accepted texts."""
    import httpx

    port = 7800 + os.getpid() % 100
    cmd = ["qinggan", "serve", "-m", str(args.model), "--port", str(port)]
    cmd += ["--threads", str(args.threads), *(["--variant", args.variant] if args.variant else [])]
    server = subprocess.Popen(
        [sys.executable, "-m", "qinggan.cli", *cmd[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        proc = psutil.Process(server.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("error: the server did not become ready in 120 s")
        time.sleep(2)
        idle = tree_rss(proc)
        longest = sorted((t for t in texts if len(t) <= 512), key=len)[-2000:]
        stop = time.monotonic() + args.serve_rss
        served = [0]
        peak = idle

        def client(offset: int) -> None:
            with httpx.Client(timeout=60) as http:
                i = offset
                while time.monotonic() < stop:
                    batch = [longest[(i + k) % len(longest)] for k in range(64)]
                    if http.post(f"{url}/v1/analyze", json={"texts": batch}).status_code == 200:
                        served[0] += len(batch)
                    i += 64

        workers = [threading.Thread(target=client, args=(n * 250,)) for n in range(8)]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            peak = max(peak, tree_rss(proc))
            time.sleep(0.2)
        after = tree_rss(proc)
    finally:
        server.terminate()
        server.wait(30)
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} with "
        f"`python bench/files.py {shlex.join(sys.argv[1:])}`; model {model_desc}; {cpu_name()}.",
        "",
        "| state | RSS (MiB) |",
        "|---|---:|",
        f"| idle (ready, warmed) | {idle / 2**20:,.0f} |",
        f"| peak under load (8 clients × 64 texts of up to 512 chars) | {peak / 2**20:,.0f} |",
        f"| after the load | {after / 2**20:,.0f} |",
        "",
        f"{served[0]:,} texts served in {args.serve_rss:g} s "
        f"({served[0] / args.serve_rss:,.0f} texts/s, {args.threads} threads).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.no_doc:
        return
    start, end = "<!-- bench:serve-rss:start -->", "<!-- bench:serve-rss:end -->"
    text = (
        args.doc.read_text(encoding="utf-8") if args.doc.exists() else "# Scoring files at scale\n"
    )
    if start in text and end in text:
        text = text[: text.index(start) + len(start)] + "\n" + report + text[text.index(end) :]
    else:
        text += f"\n{start}\n{report}{end}\n"
    args.doc.write_text(text, encoding="utf-8")
    print(f"wrote {args.doc}")


MEASURED = """\
Measured {date} with `bench/files.py`.

- Model: {model}
- Machine: {machine}
- Command: `{command}`
- Input: CSV (`id,text`) of real reviews from `../shared/data/*/*.csv.gz`, cycled to the row
  count; output {fmt}; chunks of {chunk} rows.

{table}

{notes}

rows/s excludes model loading and Ray start-up (the wall column includes them). "peak
RSS" is the `qinggan` process itself (`wait4`); the process-tree figure adds every child,
which for Ray is the local cluster (GCS, raylet, workers).
"""


if __name__ == "__main__":
    main()
