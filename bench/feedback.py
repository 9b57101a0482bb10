"""Corrections store: how fast corrections are committed, on SQLite and on PostgreSQL.

For each back end, ``--writers`` threads share one store (as one server process does)
and each stores ``--per-writer`` corrections of distinct texts, every one committed
before the next (as ``POST /v1/feedback`` does before its 201). Reports corrections per
second and per-commit latency (p50, p99). PostgreSQL is a throw-away local cluster
(tests/pgcluster.py; fsync on, like a real one) unless ``--postgres URL`` names one.

    python bench/feedback.py                       # table + bench/results/feedback.json
    python bench/feedback.py --writers 1 4 --per-writer 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pgcluster  # noqa: E402
from qinggan.feedback import Correction, now, open_store  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def run(target: str, writers: int, per_writer: int) -> dict[str, Any]:
    """``writers`` threads on one store, ``per_writer`` commits each; rate and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    with open_store(target) as store:
        barrier = threading.Barrier(writers + 1)

        def work(n: int) -> None:
            mine = []
            barrier.wait()
            for i in range(per_writer):
                text = f"第{n}组第{i}条评论：物流很快，但是包装有点简陋"
                started = time.perf_counter()
                store.record(
                    Correction(text, "Positive", "Negative", 0.7, "bench", "0" * 64, now())
                )
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        assert store.stats().count == writers * per_writer
    ms = np.array(latencies) * 1000
    return {
        "writers": writers,
        "corrections": len(latencies),
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _fresh_postgres(url: str) -> str:
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--per-writer", type=int, default=300)
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: a throw-away cluster)")
    args = parser.parse_args()
    rows = []
    root = None
    url = args.postgres
    if url is None and pgcluster.bin_dir() is not None:
        root = Path(tempfile.mkdtemp(prefix="qinggan-bench-pg-"))
        url = pgcluster.start(root, fsync=True)
    try:
        for writers in args.writers:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append({"store": "sqlite", **run(f"{tmp}/fb.db", writers, args.per_writer)})
            if url is not None:
                rows.append(
                    {"store": "postgres", **run(_fresh_postgres(url), writers, args.per_writer)}
                )
    finally:
        if root is not None:
            pgcluster.stop(root)
    print(
        f"{'store':<9} {'writers':>7} {'corrections':>11} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in rows:
        print(
            f"{r['store']:<9} {r['writers']:>7} {r['corrections']:>11} {r['per_s']:>8} "
            f"{r['p50_ms']:>7} {r['p99_ms']:>7}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "feedback.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
