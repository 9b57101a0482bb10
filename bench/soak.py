"""Soak test: steady load on ``qinggan serve`` for minutes; errors, memory and latency per minute.

Starts a server (the tiny test bundle unless ``--model``), then offers a steady open-loop
stream of requests - real review texts of every length from ../shared/data (read at run
time), one in ``--batch-every`` of them a ``/v1/analyze`` call with several texts - for
``--minutes`` minutes. Per minute it reports requests, errors (anything but 200, client
time-outs included), p50/p99 latency and the server's RSS (process tree, sampled every
100 ms). The run passes when there are zero errors, RSS at the end is within
``--max-rss-growth`` percent of RSS after the first minute (the warm-up: ONNX Runtime's
arena and the tokenizer caches fill then), and the last minute's p99 is within 2x of the
first's.

    nice -n 10 python bench/soak.py --minutes 3         # table + bench/results/soak.json
    nice -n 10 python bench/soak.py --minutes 60 --rate 300 --model fast
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from overload import (
    RESULTS,
    ROOT,
    Outcome,
    Server,
    machine,
    post_one,
    print_table,
    review_texts,
    server_counters,
    sharded_clients,
    tiny_model,
)


def request_bodies(texts: Sequence[str], batch_every: int, seed: int = 0) -> list[bytes]:
    """Bodies for /analyze, and every ``batch_every``-th one for /v1/analyze (2-16 texts)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for i, text in enumerate(texts):
        if batch_every and i % batch_every == 0:
            batch = rng.sample(list(texts), rng.randint(2, 16))
            out.append(json.dumps({"texts": batch}, ensure_ascii=False).encode())
        else:
            out.append(json.dumps({"text": text}, ensure_ascii=False).encode())
    return out


def minute_row(minute: int, outcomes: Sequence[Outcome], rss_mb: Sequence[float]) -> dict[str, Any]:
    ok = np.asarray([o.latency_s for o in outcomes if o.status == 200] or [0.0]) * 1000
    return {
        "minute": minute + 1,
        "requests": len(outcomes),
        "ok": sum(o.status == 200 for o in outcomes),
        "errors": sum(o.status != 200 for o in outcomes),
        "error_kinds": dict(Counter(o.error or str(o.status) for o in outcomes if o.status != 200)),
        "p50_ms": round(float(np.percentile(ok, 50)), 1),
        "p99_ms": round(float(np.percentile(ok, 99)), 1),
        "max_ms": round(float(ok.max()), 1),
        "rss_mb_end": round(rss_mb[-1], 1) if rss_mb else None,
        "rss_mb_max": round(max(rss_mb), 1) if rss_mb else None,
        "client_lag_p99_ms": round(
            float(np.percentile([o.lag_s * 1000 for o in outcomes] or [0.0], 99)), 1
        ),
    }


async def soak(args: argparse.Namespace, server: Server, bodies: list[bytes]) -> dict:
    minutes: list[list[Outcome]] = [[] for _ in range(args.minutes)]
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    total = int(args.minutes * 60 * args.rate)

    async with sharded_clients(server.url, args.max_connections, args.timeout_s) as clients:

        async def one(i: int, scheduled: float) -> None:
            client = clients[i % len(clients)]
            outcome = await post_one(client, bodies[i % len(bodies)], args.timeout_s, scheduled)
            minutes[min(int((scheduled - start) // 60), args.minutes - 1)].append(outcome)

        next_report = start + 60
        for i in range(total):
            scheduled = start + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if time.perf_counter() >= next_report:
                done = int((next_report - start) // 60)
                row = minute_row(
                    done - 1, minutes[done - 1], rss_in_minute(server, start, done - 1)
                )
                print(f"  minute {done}: {row}", flush=True)
                next_report += 60
        if pending:
            await asyncio.gather(*pending)

    rows = [
        minute_row(m, outcomes, rss_in_minute(server, start, m))
        for m, outcomes in enumerate(minutes)
    ]
    return {"rows": rows, "elapsed_s": time.perf_counter() - start}


def rss_in_minute(server: Server, start: float, minute: int) -> list[float]:
    lo, hi = start + 60 * minute, start + 60 * (minute + 1)
    return [rss / 1e6 for t, rss in server.rss_samples if lo <= t < hi]


COLUMNS = ["minute", "requests", "ok", "errors", "p50_ms", "p99_ms", "max_ms", "rss_mb_end",
           "rss_mb_max", "client_lag_p99_ms"]  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qinggan-soak-") as tmp:
        model = args.model or tiny_model(Path(tmp))
        env = {"QINGGAN_THREADS": str(args.threads)}
        server = Server(model, env)
        try:
            ready_s = server.wait_ready()
            idle_rss = server.rss() / 1e6
            bodies = request_bodies(review_texts(limit=5000), args.batch_every)
            print(
                f"soak: {args.minutes} min at {args.rate} req/s "
                f"({'tiny test bundle' if not args.model else args.model}), idle RSS "
                f"{idle_rss:.1f} MB",
                flush=True,
            )
            result = asyncio.run(soak(args, server, bodies))
            counters = server_counters(server.url)
        finally:
            code = server.stop()
    rows = result["rows"]
    print()
    print_table(rows, COLUMNS)
    first, last = rows[0], rows[-1]
    growth = 100.0 * (last["rss_mb_end"] - first["rss_mb_end"]) / first["rss_mb_end"]
    errors = sum(r["errors"] for r in rows)
    verdict = {
        "requests": sum(r["requests"] for r in rows),
        "errors": errors,
        "idle_rss_mb": round(idle_rss, 1),
        "rss_after_minute_1_mb": first["rss_mb_end"],
        "rss_at_end_mb": last["rss_mb_end"],
        "rss_growth_pct": round(growth, 2),
        "max_rss_mb": max(r["rss_mb_max"] for r in rows),
        "p99_first_vs_last_ms": [first["p99_ms"], last["p99_ms"]],
        "ready_s": round(ready_s, 2),
        "exit_code_after_sigterm": code,
        "passed": errors == 0
        and growth <= args.max_rss_growth
        and last["p99_ms"] <= 2 * max(first["p99_ms"], 1.0)
        and code == 0,
    }
    print()
    for key, value in {**verdict, **counters}.items():
        print(f"{key:28} {value}")
    return {
        "script": "bench/soak.py",
        "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
        "machine": machine(),
        "config": vars(args),
        "minutes": rows,
        "verdict": verdict,
        "server_counters": counters,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=int, default=3)
    p.add_argument("--rate", type=float, default=150.0, help="requests per second, open loop")
    p.add_argument("--model", help="bundle to serve (default: the tiny test bundle)")
    p.add_argument("--batch-every", type=int, default=10, help="every Nth request is a batch")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--timeout-s", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="server ONNX Runtime threads")
    p.add_argument("--max-rss-growth", type=float, default=5.0, help="percent, minute 1 -> end")
    p.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.minutes < 2:
        raise SystemExit("--minutes must be at least 2 (minute 1 is the warm-up baseline)")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n")
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"\nwrote {shown}")
    return 0 if result["verdict"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
