"""Overload test: ramp offered load from 1x to 10x the server's capacity and back.

What it checks, on a real ``qinggan serve`` subprocess bound to 127.0.0.1:

* every request gets a *timely* answer (within ``--timeout-s``): 200, or 429/503 carrying
  a ``Retry-After`` header - never a hang, a reset connection or another status;
* the server's resident memory (process tree, sampled every 100 ms) stays bounded;
* after the burst, throughput returns to the pre-burst level (recovery time measured).

How: capacity is first measured closed-loop (``--connections-base`` connections, each
sending its next request as soon as the last returns). Then each stage offers an
*open-loop*, evenly spaced arrival stream at ``k x capacity`` requests/s for
``--stage-s`` seconds, each arrival on its own connection slot (up to ``--max-connections``
in flight), so the server - not the client - decides what to accept. Finally the
closed-loop baseline is repeated and its per-0.5 s throughput gives the recovery time.

By default it serves the tiny test bundle slowed down by a fixed delay per model call
(``tests/slowserve.py``, which wraps the model; the server has no test hooks) and a small
batch size, so capacity is a few hundred
requests/s: 10x that is still something one asyncio client on a shared 2-core machine can
offer. ``--model`` runs a real bundle instead (then capacity is whatever it is).

    nice -n 10 python bench/overload.py                      # table + bench/results/overload.json
    nice -n 10 python bench/overload.py --levels 1,2,5,10 --stage-s 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gzip
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATA = Path(os.environ.get("QINGGAN_DATA", ROOT.parent / "shared" / "data"))
SLOW_SERVE = ROOT / "tests" / "slowserve.py"  # serve with every model call slowed down


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``qinggan serve`` subprocess, its RSS sampler and its log."""

    def __init__(
        self, model: str, env: dict[str, str], args: Sequence[str] = (), delay_ms: float = 0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="qinggan-overload-", suffix=".log")
        serve = [str(SLOW_SERVE), str(delay_ms)] if delay_ms else ["-m", "qinggan.cli", "serve"]
        cmd = [sys.executable, *serve, "--model", model,
               "--host", "127.0.0.1", "--port", str(self.port), *args]  # fmt: skip
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")}
        full_env.update({"QINGGAN_LOG_LEVEL": "warning", **env})
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.ps = psutil.Process(self.proc.pid)
        self.rss_samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Block until /ready is 200; return seconds since start."""
        deadline = time.perf_counter() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + "/ready").status_code == 200:
                        self._sampler.start()
                        return time.perf_counter() - self.started
                time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def rss(self) -> int:
        """Resident bytes of the server and its children."""
        try:
            procs = [self.ps, *self.ps.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.rss_samples.append((time.perf_counter(), self.rss()))

    def max_rss_between(self, start: float, end: float) -> int:
        values = [rss for t, rss in self.rss_samples if start <= t <= end]
        return max(values, default=self.rss())

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def tiny_model(tmp: Path) -> str:
    from qinggan.testing import make_tiny_bundle

    return str(make_tiny_bundle(tmp / "tiny").path)


def review_texts(limit: int = 2000, seed: int = 0) -> list[str]:
    """Real review texts from ../shared/data (read at run time), else synthetic ones."""
    texts: list[str] = []
    for path in sorted(DATA.glob("*/test.csv.gz")):
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            texts.extend(row["text"] for row in csv.DictReader(fh) if row["text"].strip())
    if not texts:
        rng = random.Random(seed)
        words = ["酒店很好", "服务太差了", "非常满意", "物流慢", "味道不错推荐", "失望", "屏幕清楚"]
        texts = ["，".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(limit)]
    random.Random(seed).shuffle(texts)
    return [t[:500] for t in texts[:limit]]


# ----------------------------------------------------------------------------- client


@dataclass
class Outcome:
    """One request: when it was sent, how long it took, what came back."""

    sent_at: float
    latency_s: float
    status: int  # HTTP status, or 0 = transport error, -1 = client timeout
    retry_after: bool = False
    lag_s: float = 0.0  # how late the client sent it, against its open-loop schedule
    error: str = ""  # the exception's class name for a transport error or time-out


@dataclass
class StageResult:
    name: str
    offered_rps: float | None
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list, repr=False)
    max_rss_mb: float = 0.0

    def span_s(self) -> float:
        """From the first send to the last answer (a stage's answers may outlast it)."""
        if not self.outcomes:
            return self.duration_s
        first = min(o.sent_at for o in self.outcomes)
        return max(o.sent_at + o.latency_s for o in self.outcomes) - first

    def summary(self) -> dict[str, Any]:
        counts = Counter(o.status for o in self.outcomes)
        ok = [o.latency_s for o in self.outcomes if o.status == 200]
        shed = [o for o in self.outcomes if o.status in (429, 503)]
        all_lat = np.asarray([o.latency_s for o in self.outcomes] or [0.0]) * 1000
        ok_lat = np.asarray(ok or [0.0]) * 1000
        return {
            "stage": self.name,
            "offered_rps": None if self.offered_rps is None else round(self.offered_rps, 1),
            "sent": len(self.outcomes),
            "ok": counts[200],
            "shed_429": counts[429],
            "shed_503": counts[503],
            "shed_without_retry_after": sum(not o.retry_after for o in shed),
            "timeouts": counts[-1],
            "transport_errors": counts[0],
            "other_status": {
                str(s): n for s, n in counts.items() if s not in (200, 429, 503, 0, -1)
            },
            "goodput_rps": round(counts[200] / self.span_s(), 1),
            "ok_p50_ms": round(float(np.percentile(ok_lat, 50)), 1),
            "ok_p99_ms": round(float(np.percentile(ok_lat, 99)), 1),
            "shed_p99_ms": round(
                float(np.percentile([o.latency_s * 1000 for o in shed] or [0.0], 99)), 1
            ),
            "all_max_ms": round(float(all_lat.max()), 1),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "client_lag_p99_ms": round(
                float(np.percentile([o.lag_s * 1000 for o in self.outcomes] or [0.0], 99)), 1
            ),
        }


def bodies_for(texts: Sequence[str], per_request: int = 1) -> list[bytes]:
    """JSON bodies: ``{"text"}`` for /analyze, or ``{"texts"}`` of ``per_request`` texts."""
    if per_request <= 1:
        return [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    groups = [
        texts[i : i + per_request] for i in range(0, len(texts) - per_request + 1, per_request)
    ]
    return [json.dumps({"texts": list(g)}, ensure_ascii=False).encode() for g in groups]


def path_for(body: bytes) -> str:
    return "/v1/analyze" if body.startswith(b'{"texts"') else "/analyze"


async def post_one(
    client: httpx.AsyncClient, body: bytes, timeout_s: float, scheduled: float | None = None
) -> Outcome:
    """One POST; an answer later than ``timeout_s`` counts as a time-out (status -1).

    httpx's own time-outs bound the wait (no ``asyncio.wait_for``: cancelling requests
    mid-flight makes httpcore's pool do extra work exactly when the client is busiest).
    """
    sent = time.perf_counter()
    lag = 0.0 if scheduled is None else max(0.0, sent - scheduled)
    try:
        response = await client.post(
            path_for(body), content=body, headers={"content-type": "application/json"}
        )
    except httpx.TimeoutException as exc:
        return Outcome(sent, time.perf_counter() - sent, -1, lag_s=lag, error=type(exc).__name__)
    except httpx.TransportError as exc:
        return Outcome(sent, time.perf_counter() - sent, 0, lag_s=lag, error=type(exc).__name__)
    latency = time.perf_counter() - sent
    return Outcome(
        sent,
        latency,
        response.status_code if latency <= timeout_s else -1,
        retry_after="retry-after" in response.headers,
        lag_s=lag,
    )


def make_client(url: str, max_connections: int, timeout_s: float) -> httpx.AsyncClient:
    # Idle connections are dropped by the client after 2 s, before uvicorn's 5 s keep-alive
    # time-out closes them: with equal time-outs (httpx's default is also 5 s) a request
    # can be sent on a connection the server is closing that instant.
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=2.0,
    )
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(timeout_s))


@contextlib.asynccontextmanager
async def sharded_clients(
    url: str, max_connections: int, timeout_s: float, shards: int = 16
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``shards`` clients sharing ``max_connections``: one httpx pool with hundreds of
    waiting requests costs more client CPU than the server spends refusing them."""
    per_shard = max(1, max_connections // shards)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(make_client(url, per_shard, timeout_s))
            for _ in range(shards)
        ]


async def closed_loop(
    url: str, bodies: Sequence[bytes], connections: int, duration_s: float, timeout_s: float
) -> list[Outcome]:
    """``connections`` workers, each sending its next request when the last one returns."""
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + duration_s
    async with make_client(url, connections, timeout_s) as client:

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                outcomes.append(await post_one(client, bodies[i % len(bodies)], timeout_s))
                i += connections

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return outcomes


async def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    duration_s: float,
    max_connections: int,
    timeout_s: float,
) -> list[Outcome]:
    """Send at ``rate`` requests/s for ``duration_s`` whatever the answers; wait for them all."""
    tasks: list[asyncio.Task[Outcome]] = []
    async with sharded_clients(url, max_connections, timeout_s) as clients:
        start = time.perf_counter()
        n = int(rate * duration_s)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            client = clients[i % len(clients)]
            tasks.append(
                asyncio.create_task(post_one(client, bodies[i % len(bodies)], timeout_s, scheduled))
            )
        return list(await asyncio.gather(*tasks))


SLOW_HEADERS = b"POST /analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
SLOW_BODY = SLOW_HEADERS + b'Content-Length: 100\r\n\r\n{"text": '


async def with_slow_clients(
    server: Server, count: int, closed: Callable[[str], Awaitable[StageResult]]
) -> dict[str, Any]:
    """Hold ``count`` connections that never finish their request (half stop mid-headers,
    half mid-body, slowloris-style) while a closed-loop stage runs; report whether normal
    clients were still served and how many of the stalled connections the server kept."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    rss_before = server.rss() / 1e6
    for i in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(SLOW_HEADERS if i % 2 else SLOW_BODY)
        await writer.drain()
        conns.append((reader, writer))
    held_s = time.perf_counter()
    stage = await closed(f"+{count} slow")
    held_s = time.perf_counter() - held_s

    async def still_open(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), 0.01) != b""
        except asyncio.TimeoutError:
            return True
        except ConnectionError:
            return False

    open_after = sum([await still_open(r) for r, _ in conns])
    for _, writer in conns:
        writer.close()
    return {
        "slow_connections": count,
        "slow_held_s": round(held_s, 1),
        "slow_still_open_after_hold": open_after,
        "rss_mb_before_slow": round(rss_before, 1),
        "rss_mb_with_slow": stage.summary()["max_rss_mb"],
    }


def windows(outcomes: Sequence[Outcome], start: float, width: float) -> list[int]:
    """Successful answers per window of ``width`` s, by completion time, from ``start``."""
    done = [o.sent_at + o.latency_s - start for o in outcomes if o.status == 200]
    if not done:
        return []
    counts = Counter(int(t // width) for t in done if t >= 0)
    return [counts[i] for i in range(max(counts) + 1)]


def server_counters(url: str) -> dict[str, float]:
    """The server's own counts from /metrics: answers by status, refusals, drops, failures."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name == "qinggan_requests_total" and route in ("/analyze", "/v1/analyze"):
                key = f"{route.strip('/').replace('/', '_')}_{sample.labels['status']}"
            elif sample.name in ("qinggan_rejected_requests_total", "qinggan_dropped_texts_total"):
                key = f"{sample.name.removeprefix('qinggan_').removesuffix('_total')}"
                key += f"_{sample.labels['reason']}"
            elif sample.name == "qinggan_batch_failures_total":
                key = "batch_failures"
            else:
                continue
            counts[key] = counts.get(key, 0) + sample.value
    return counts


# ----------------------------------------------------------------------------- report


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).rjust(widths[c]) for c in columns))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "load_avg_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "note": "shared 2-core machine; other engineers' jobs were running",
    }


COLUMNS = ["stage", "offered_rps", "sent", "ok", "shed_429", "shed_503",
           "shed_without_retry_after", "timeouts", "transport_errors", "goodput_rps",
           "ok_p50_ms", "ok_p99_ms", "shed_p99_ms", "all_max_ms", "max_rss_mb",
           "client_lag_p99_ms"]  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qinggan-overload-") as tmp:
        model = args.model or tiny_model(Path(tmp))
        env = {
            "QINGGAN_MAX_BATCH_SIZE": str(args.max_batch_size),
            "QINGGAN_MAX_QUEUE": str(args.max_queue),
            "QINGGAN_REQUEST_TIMEOUT_S": str(args.request_timeout_s),
            "QINGGAN_THREADS": str(args.threads),
        }
        delay_ms = args.infer_delay_ms if not args.model else 0
        server = Server(model, env, delay_ms=delay_ms)
        try:
            ready_s = server.wait_ready()
            idle_rss = server.rss() / 1e6
            texts = review_texts(limit=2000 * args.texts_per_request)
            bodies = bodies_for(texts, args.texts_per_request)
            return asyncio.run(measure(args, server, bodies, ready_s, idle_rss, env))
        finally:
            code = server.stop()
            print(f"server exit code after SIGTERM: {code}")


async def measure(
    args: argparse.Namespace,
    server: Server,
    bodies: Sequence[bytes],
    ready_s: float,
    idle_rss: float,
    env: dict[str, str],
) -> dict[str, Any]:
    stages: list[StageResult] = []

    async def closed(name: str) -> StageResult:
        t0 = time.perf_counter()
        outcomes = await closed_loop(
            server.url, bodies, args.connections_base, args.stage_s, args.timeout_s
        )
        t1 = time.perf_counter()
        stage = StageResult(name, None, t1 - t0, outcomes, server.max_rss_between(t0, t1) / 1e6)
        stages.append(stage)
        return stage

    await closed_loop(server.url, bodies, args.connections_base, 1.0, args.timeout_s)  # warm-up
    base = await closed("baseline")
    capacity = base.summary()["goodput_rps"]
    print(f"capacity (closed loop, {args.connections_base} connections): {capacity} req/s")
    for level in args.levels:
        rate = level * capacity
        t0 = time.perf_counter()
        outcomes = await open_loop(
            server.url, bodies, rate, args.stage_s, args.max_connections, args.timeout_s
        )
        t1 = time.perf_counter()
        stage = StageResult(f"{level:g}x", rate, args.stage_s, outcomes)
        stage.max_rss_mb = server.max_rss_between(t0, t1) / 1e6
        stages.append(stage)
        print(f"  {stage.name}: sent {len(outcomes)}, ok {stage.summary()['ok']}", flush=True)
    burst_end = time.perf_counter()
    after = await closed("after")
    # Recovery: the first 1 s window after the burst with >= 90% of the baseline's throughput.
    per_window = windows(after.outcomes, burst_end, 1.0)
    recovery_s = next((float(i) for i, n in enumerate(per_window) if n >= 0.9 * capacity), None)

    slow: dict[str, Any] = {}
    if args.slow_clients:
        slow = await with_slow_clients(server, args.slow_clients, closed)
    rows = [s.summary() for s in stages]
    print()
    print_table(rows, COLUMNS)
    after_rps = next(r["goodput_rps"] for r in rows if r["stage"] == "after")
    peak_rss = max(r["max_rss_mb"] for r in rows)
    answered = all(r["timeouts"] == 0 and r["transport_errors"] == 0 and not r["other_status"]
                   and r["shed_without_retry_after"] == 0 for r in rows)  # fmt: skip
    verdict = {
        "every_request_answered_in_time": answered,
        "idle_rss_mb": round(idle_rss, 1),
        "peak_rss_mb": peak_rss,
        "rss_growth_mb": round(peak_rss - idle_rss, 1),
        "capacity_rps": capacity,
        "after_burst_rps": after_rps,
        "after_vs_before": round(after_rps / capacity, 3) if capacity else None,
        "recovery_s": recovery_s,
        "ready_s": round(ready_s, 2),
    }
    counters = server_counters(server.url)
    print()
    for key, value in {**verdict, **slow, **counters}.items():
        print(f"{key:32} {value}")
    return {
        "script": "bench/overload.py",
        "command": " ".join(["python", "bench/overload.py", *sys.argv[1:]]),
        "machine": machine(),
        "config": {**vars(args), "server_env": env},
        "stages": rows,
        "verdict": verdict,
        "slow_clients": slow,
        "server_counters": counters,
        "after_burst_ok_per_second": per_window,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="bundle to serve (default: the tiny test bundle + infer delay)")
    p.add_argument("--levels", default="1,2,4,7,10",
                   type=lambda s: [float(x) for x in s.split(",")],
                   help="offered load as multiples of measured capacity")  # fmt: skip
    p.add_argument("--stage-s", type=float, default=6.0, help="seconds per stage")
    p.add_argument("--connections-base", type=int, default=16, help="closed-loop connections")
    p.add_argument("--max-connections", type=int, default=1024, help="open-loop connection cap")
    p.add_argument("--timeout-s", type=float, default=10.0, help="a 'timely' answer comes within")
    p.add_argument("--infer-delay-ms", type=float, default=200.0,
                   help="per-batch delay for the tiny model (tests/slowserve.py)")  # fmt: skip
    p.add_argument("--max-batch-size", type=int, default=4)
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--request-timeout-s", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--slow-clients", type=int, default=500,
                   help="stalled connections held in a last stage (0: skip)")  # fmt: skip
    p.add_argument("--texts-per-request", type=int, default=1,
                   help="1: POST /analyze; N > 1: POST /v1/analyze with N texts")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "overload.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if result["verdict"]["every_request_answered_in_time"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
