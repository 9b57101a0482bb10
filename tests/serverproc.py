"""Run ``qinggan serve`` in a subprocess on a free 127.0.0.1 port, for end-to-end tests.

Used by the reliability and security tests (and usable by any test that needs a real
server): the process is started with the interpreter running pytest, its output goes to
a temporary file (never a pipe that could fill up and block it), and :meth:`start`
waits until ``/ready`` answers 200 or the process exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SLOW_SERVE = Path(__file__).with_name("slowserve.py")


def serve_command(
    model: str | os.PathLike[str],
    port: int,
    args: Sequence[str] = (),
    infer_delay_ms: float | None = None,
) -> list[str]:
    """The command line that starts the server: ``python -m qinggan.cli serve ...``, or
    with ``infer_delay_ms`` the same server on a slowed-down model (``slowserve.py``)."""
    if infer_delay_ms is None:
        start = [sys.executable, "-m", "qinggan.cli", "serve"]
    else:
        start = [sys.executable, str(SLOW_SERVE), str(infer_delay_ms)]
    return [
        *start,
        "--model",
        os.fspath(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment minus any QINGGAN_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGGAN_")}
    env.setdefault("QINGGAN_LOG_LEVEL", "warning")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """One ``qinggan serve`` subprocess; use as a context manager or call start/stop.

    ``infer_delay_ms`` slows every model call by that much (see ``slowserve.py``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        infer_delay_ms: float | None = None,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = serve_command(model, self.port, args, infer_delay_ms)
        self.env = clean_env(env)
        self._log = tempfile.NamedTemporaryFile(
            prefix="qinggan-serve-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> ServerProcess:
        """Start the process and wait for ``/ready``; raise with its log if it never gets there."""
        self.proc = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"qinggan serve exited with {self.proc.returncode}:\n{self.output()}"
                    )
                try:
                    if client.get("/ready").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"qinggan serve not ready after {timeout:.0f} s:\n{self.output()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop the process (``sig``, then SIGKILL after ``timeout``); return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        # ``with ServerProcess(...).start() as s`` must not start a second, leaked process
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client bound to this server."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.base_url, **kwargs)  # type: ignore[arg-type]


class RawResponse:
    """A response read off a raw socket: status, lower-cased headers, body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"RawResponse({self.status}, {self.body[:80]!r})"


def raw_request(port: int, data: bytes, *, timeout: float = 30.0) -> RawResponse | None:
    """Send ``data`` verbatim on a new connection and parse one response.

    For requests httpx refuses to build (bad methods, odd paths, broken bytes). Returns
    ``None`` when the server closed the connection without answering, or is still
    waiting for the rest of an incomplete request after ``timeout`` seconds.
    """
    import http.client

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            body = response.read()
        except (
            http.client.RemoteDisconnected,
            http.client.BadStatusLine,
            ConnectionResetError,
            TimeoutError,
        ):
            return None
        headers = {k.lower(): v for k, v in response.getheaders()}
        return RawResponse(response.status, headers, body)
