"""The systems under test: how each is installed, started, probed and stopped.

Each :class:`System` is a server command line. :class:`Running` starts it, measures the
time from process start to the first ``200`` on a real request, samples the resident
memory of the whole process tree (psutil: RSS summed, and PSS, which counts pages shared
between gunicorn workers once), and stops the tree.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import venv
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
BASELINE_DIR = BENCH / "baseline"
BASELINE_VENV = BENCH / ".cache" / "baseline-venv"


@dataclass
class System:
    """One server under test."""

    name: str
    description: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    analyze_path: str = "/analyze"
    trivial_path: str | None = None  # a cheap endpoint, to show the load generator's ceiling

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.analyze_path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_baseline_venv(log=print) -> Path:  # type: ignore[no-untyped-def]
    """Create ``bench/.cache/baseline-venv`` with the original stack's packages if missing."""
    python = BASELINE_VENV / "bin" / "python"
    gunicorn = BASELINE_VENV / "bin" / "gunicorn"
    if gunicorn.is_file():
        return BASELINE_VENV
    log(
        f"installing the original stack into {BASELINE_VENV} "
        "(torch==2.13.0, transformers, flask, gunicorn)"
    )
    venv.create(BASELINE_VENV, with_pip=True, clear=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(BASELINE_DIR / "requirements.txt")],
        check=True,
    )
    return BASELINE_VENV


def baseline_system(hf_dir: Path, port: int) -> System:
    """The original: gunicorn -w 3 --timeout 30, Flask, a lazily created pipeline singleton."""
    return System(
        name="original",
        description="Flask + transformers pipeline (torch fp32), gunicorn -w 3 --timeout 30",
        argv=[
            str(BASELINE_VENV / "bin" / "gunicorn"),
            "-w",
            "3",
            "--timeout",
            "30",
            "-b",
            f"127.0.0.1:{port}",
            "app:app",
        ],
        port=port,
        env={"BASELINE_MODEL": str(hf_dir), "TOKENIZERS_PARALLELISM": "false"},
        cwd=BASELINE_DIR,
        trivial_path=None,
    )


def qinggan_system(
    name: str, model: str, port: int, *, variant: str | None, options: dict[str, str]
) -> System:
    """``qinggan serve`` on a bundle; ``options`` are extra ``--flag value`` pairs."""
    argv = [sys.executable, "-m", "qinggan.cli", "serve", "--model", model, "--port", str(port)]
    argv += ["--host", "127.0.0.1"]
    if variant:
        argv += ["--variant", variant]
    for flag, value in options.items():
        argv += [flag] if value == "" else [flag, value]
    return System(
        name=name,
        description=f"qinggan serve ({variant or 'default variant'}), {model}",
        argv=argv,
        port=port,
        trivial_path="/health",
    )


def tree_memory(root: psutil.Process) -> tuple[float, float]:
    """(RSS summed, PSS summed) of ``root`` and all its descendants, in MB."""
    rss = pss = 0.0
    procs = [root]
    try:
        procs += root.children(recursive=True)
    except psutil.Error:
        pass
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 1e6, pss / 1e6


class MemorySampler:
    """Samples the tree's memory in a thread while a load phase runs; keeps the peaks."""

    def __init__(self, proc: psutil.Process, interval_s: float = 0.5) -> None:
        self.proc = proc
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory(self.proc)
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            self.peak_pss_mb = max(self.peak_pss_mb, pss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Running:
    """A started system. Use as a context manager: the process tree is stopped on exit."""

    def __init__(self, system: System, log_path: Path) -> None:
        self.system = system
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, **system.env}
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            system.argv,
            cwd=system.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.proc = psutil.Process(self.popen.pid)

    def wait_first_answer(self, body: bytes, timeout_s: float) -> float:
        """Poll the analyze URL until it answers 200; seconds since the process started."""
        deadline = self.started + timeout_s
        while time.perf_counter() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.system.name} exited with {self.popen.returncode} before answering; "
                    f"see {self.log_path}:\n{self.tail()}"
                )
            request = urllib.request.Request(
                self.system.url, data=body, headers={"content-type": "application/json"}
            )
            try:
                with urllib.request.urlopen(
                    request, timeout=max(1.0, deadline - time.perf_counter())
                ) as r:
                    if r.status == 200:
                        r.read()
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(
            f"{self.system.name} gave no 200 within {timeout_s:.0f} s:\n{self.tail()}"
        )

    def memory_mb(self) -> tuple[float, float]:
        return tree_memory(self.proc)

    def sampler(self) -> MemorySampler:
        return MemorySampler(self.proc)

    def tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
