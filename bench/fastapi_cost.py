"""Does FastAPI still cost anything per request? The app as shipped (FastAPI, routes run as
plain Starlette endpoints) against the same route table, middleware and error handlers on
bare Starlette, both served by uvicorn with the tiny model, loaded by wrk at 1 and 16
connections, alternating variants so drift on a shared machine hits both alike.

    python bench/fastapi_cost.py                 # prints a table; decision in bench/findings.md
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))

import loadgen  # noqa: E402

TEXTS = ["酒店服务很好，房间干净，非常满意", "质量太差了，很失望", "物流很快，包装也好",
         "味道一般，价格有点贵", "屏幕不错但是电池不行", "下次还来，推荐"]  # fmt: skip


def starlette_app(settings: Any, model: Any) -> Any:
    """The shipped route table, edge middleware and error handlers on bare Starlette."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from qinggan.server.errors import install_error_handlers
    from qinggan.server.middleware import EdgeMiddleware
    from qinggan.server.routes import ROUTES
    from qinggan.server.service import Service

    service = Service(settings, model)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    routes = [Route(r.path, r.endpoint, methods=[*r.methods, *r.hidden_methods]) for r in ROUTES]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    paths = frozenset(r.path for r in ROUTES)
    app.add_middleware(EdgeMiddleware, metrics=service.metrics, api_key=None, routes=paths)
    return app


def serve(variant: str, model_path: str, port: int) -> None:
    import uvicorn

    import qinggan
    from qinggan.server import create_app
    from qinggan.server.runner import http_protocol
    from qinggan.settings import Settings

    settings = Settings(port=port, log_level="warning")
    model = qinggan.load(model_path, threads=1)
    build = create_app if variant == "fastapi" else starlette_app
    uvicorn.run(build(settings, model), port=port, log_level="warning",
                http=http_protocol(30.0), server_header=False)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(variant: str, model_path: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--serve", variant, "--model", model_path, "--port", str(port)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{variant} server did not start")


def measure(model_path: str, rounds: int, duration_s: float) -> dict[tuple[str, int], list[Any]]:
    bodies = [orjson.dumps({"text": t}) for t in TEXTS]
    gen = loadgen.LoadGenerator("wrk", bodies, timeout_s=10)
    results: dict[tuple[str, int], list[Any]] = {}
    for _ in range(rounds):
        for variant in ("fastapi", "starlette"):
            port = free_port()
            proc = start(variant, model_path, port)
            try:
                url = f"http://127.0.0.1:{port}/analyze"
                gen.run(url, connections=4, duration_s=1)  # warm-up
                for connections in (1, 16):
                    run = gen.run(url, connections=connections, duration_s=duration_s)
                    results.setdefault((variant, connections), []).append(run)
            finally:
                proc.terminate()
                proc.wait(30)
    return results


async def asgi_cost(app: Any, path: str, body: bytes, calls: int) -> float:
    """CPU microseconds per request through the whole ASGI app, no network."""
    method = "POST" if body else "GET"
    headers = [(b"content-type", b"application/json")] if body else []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": headers, "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip
    begin = time.process_time()  # CPU time: other processes on a shared machine blur it less
    for _ in range(calls):
        await app(dict(scope), receive, send)
    return (time.process_time() - begin) / calls * 1e6


def in_process(model_path: str, rounds: int = 7) -> None:
    """Per-request cost of each app, called directly (the model's time included for
    /analyze): what the framework itself adds, without the network. Both apps run in one
    event loop and take turns, and the best round counts, so a busy machine blurs less."""
    import asyncio

    import qinggan
    from qinggan.server import create_app
    from qinggan.settings import Settings

    model = qinggan.load(model_path, threads=1)
    body = orjson.dumps({"text": TEXTS[0]})
    apps = {"fastapi": create_app, "starlette": starlette_app}

    async def run() -> dict[str, tuple[float, float]]:
        best = {name: (float("inf"), float("inf")) for name in apps}
        async with contextlib.AsyncExitStack() as stack:
            built = {name: build(Settings(max_wait_ms=0), model) for name, build in apps.items()}
            for app in built.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            for _ in range(rounds):
                for name, app in built.items():
                    health = await asgi_cost(app, "/health", b"", 2000)
                    analyze = await asgi_cost(app, "/analyze", body, 300)
                    best[name] = (min(best[name][0], health), min(best[name][1], analyze))
        return best

    print("| app | GET /health CPU µs | POST /analyze CPU µs (tiny model included) |")
    print("|---|---|---|")
    for name, (health, analyze) in asyncio.run(run()).items():
        print(f"| {name} | {health:.1f} | {analyze:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve", choices=["fastapi", "starlette"])
    p.add_argument("--model")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration-s", type=float, default=5.0)
    p.add_argument("--asgi-only", action="store_true", help="only the in-process comparison")
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.model, args.port)
        return
    with tempfile.TemporaryDirectory() as tmp:
        from qinggan.testing import make_tiny_bundle

        model = args.model or str(make_tiny_bundle(Path(tmp) / "tiny").path)
        in_process(model)
        if args.asgi_only:
            return
        results = measure(model, args.rounds, args.duration_s)
    print("| app | clients | req/s (median of runs) | p50 ms | runs (req/s) |")
    print("|---|---|---|---|---|")
    for (variant, connections), runs in sorted(
        results.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        rps = [r.ok / r.duration_s for r in runs]
        p50 = statistics.median(r.latency_ms["p50"] for r in runs)
        each = ", ".join(f"{x:.0f}" for x in rps)
        print(f"| {variant} | {connections} | {statistics.median(rps):.0f} | {p50:.2f} | {each} |")


if __name__ == "__main__":
    main()
