"""Closed-loop HTTP load: N connections, each sending the next request as soon as the last returns.

Two interchangeable generators return the same :class:`LoadResult`:

* ``wrk`` (C, event loop, ``apt-get install -y wrk``) with ``wrk_bodies.lua`` cycling through
  pre-encoded JSON bodies: the one used for measured runs, because it costs the server the
  least CPU on a 2-core machine;
* an asyncio client on ``httpx``, used where wrk is absent (CI smoke runs).

Either way the harness also points the generator at a trivial endpoint in the same run, so
the report shows the ceiling the generator itself imposes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LUA_SCRIPT = Path(__file__).with_name("wrk_bodies.lua")


@dataclass
class LoadResult:
    """What one load phase measured. Latencies are of completed responses, in ms."""

    tool: str
    connections: int
    duration_s: float
    ok: int
    non_2xx: int
    socket_errors: int
    timeouts: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    wrk_corrected_ms: dict[str, float] | None = None  # wrk's own, coordinated-omission adjusted

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors + self.timeouts

    @property
    def rps(self) -> float:
        """Successful responses per second."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "rps": round(self.rps, 2)}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    bodies_file: Path,
    *,
    connections: int,
    duration_s: float,
    timeout_s: float,
    method: str = "POST",
) -> LoadResult:
    """One wrk run, one thread per connection so ``wrk_bodies.lua`` times each request.

    The latencies reported are those exact per-request times; wrk's own figures (which it
    "corrects" for coordinated omission, inflating p50 and the mean of closed-loop runs
    with varied service times: see the script) go to ``wrk_corrected_ms``.
    """
    cmd = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        "GET" if method == "GET" else str(bodies_file),
        str(connections),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = data["errors"]
    lat, corrected = data["latency_us"], data["wrk_corrected_us"]
    keys = ("p50", "p95", "p99", "mean", "max")
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=data["duration_us"] / 1e6,
        ok=data["requests"] - errors["status"],
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"],
        timeouts=errors["timeout"],
        latency_ms={k: round(lat[k] / 1000, 3) for k in keys} if lat["n"] else {},
        wrk_corrected_ms={k: round(corrected[k] / 1000, 3) for k in keys},
    )


async def _httpx_load(
    url: str,
    bodies: Sequence[bytes],
    connections: int,
    duration_s: float | None,
    total_requests: int | None,
    timeout_s: float,
    method: str,
) -> LoadResult:
    import httpx

    latencies: list[float] = []
    counts = {"ok": 0, "non_2xx": 0, "socket": 0, "timeout": 0}
    state = {"next": 0, "sent": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"content-type": "application/json"}
    start = time.perf_counter()
    deadline = start + duration_s if duration_s else float("inf")

    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                if total_requests is not None and state["sent"] >= total_requests:
                    return
                state["sent"] += 1
                body = bodies[state["next"] % len(bodies)]
                state["next"] += 1
                t0 = time.perf_counter()
                try:
                    if method == "GET":
                        response = await client.get(url)
                    else:
                        response = await client.post(url, content=body, headers=headers)
                except httpx.TimeoutException:
                    counts["timeout"] += 1
                    continue
                except httpx.TransportError:
                    counts["socket"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                counts["ok" if 200 <= response.status_code < 300 else "non_2xx"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(
        tool="httpx",
        connections=connections,
        duration_s=elapsed,
        ok=counts["ok"],
        non_2xx=counts["non_2xx"],
        socket_errors=counts["socket"],
        timeouts=counts["timeout"],
        latency_ms=latency_summary(latencies),
    )


def run_httpx(
    url: str,
    bodies: Sequence[bytes],
    *,
    connections: int,
    duration_s: float | None = None,
    total_requests: int | None = None,
    timeout_s: float,
    method: str = "POST",
) -> LoadResult:
    """The asyncio generator: stops after ``duration_s`` or ``total_requests``, whichever first."""
    return asyncio.run(
        _httpx_load(url, bodies, connections, duration_s, total_requests, timeout_s, method)
    )


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(float(ms.mean()), 3),
        "max": round(float(ms.max()), 3),
    }


class LoadGenerator:
    """Runs load phases against one URL with a fixed set of request bodies."""

    def __init__(self, tool: str, bodies: Sequence[bytes], timeout_s: float) -> None:
        if tool == "wrk" and not wrk_available():
            raise RuntimeError(
                "wrk is not installed (apt-get install -y wrk) - or use --client httpx"
            )
        self.tool = tool
        self.bodies = list(bodies)
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="qinggan-bench-")
        self.bodies_file = Path(self._tmp.name) / "bodies.jsonl"
        self.bodies_file.write_bytes(b"\n".join(self.bodies) + b"\n")

    def run(
        self,
        url: str,
        *,
        connections: int,
        duration_s: float,
        total_requests: int | None = None,
        method: str = "POST",
    ) -> LoadResult:
        """Load ``url`` for ``duration_s`` (httpx also stops after ``total_requests``)."""
        if self.tool == "wrk":
            return run_wrk(
                url,
                self.bodies_file,
                connections=connections,
                duration_s=duration_s,
                timeout_s=self.timeout_s,
                method=method,
            )
        return run_httpx(
            url,
            self.bodies,
            connections=connections,
            duration_s=duration_s,
            total_requests=total_requests,
            timeout_s=self.timeout_s,
            method=method,
        )

    def close(self) -> None:
        self._tmp.cleanup()
