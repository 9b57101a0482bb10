"""The benchmark harness must keep working: run ``bench/serve.py --smoke`` end to end.

No timing thresholds: this only checks that every phase ran and produced sane records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("psutil", reason="the benchmark harness needs psutil (the test extra has it)")


@pytest.mark.slow
def test_serve_smoke_runs_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "serve.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["meta"]["smoke"] is True
    entry = results["systems"]["qinggan-tiny"]
    assert "error" not in entry
    assert entry["time_to_first_answer_s"] > 0
    assert entry["memory_idle_mb"]["rss"] > 0
    for phase in entry["phases"].values():
        assert phase["ok"] > 0
        assert phase["errors"] == 0
        assert phase["latency_ms"]["p50"] <= phase["latency_ms"]["p99"]
        assert phase["memory_peak_mb"]["rss"] > 0
    assert entry["trivial_endpoint"]["c16"]["ok"] > 0
    reference = entry["in_process"]
    assert reference["single"]["n"] > 0
    assert reference["batched_best"]["texts_per_s"] > 0
    after = entry["in_process_after"]["single"]  # the drift check after the HTTP phases
    assert after["n"] == reference["single"]["n"] and after["p50_ms"] > 0


def test_report_renders_smoke_like_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """report.py turns stored results into markdown with the headline tables."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import report
    finally:
        sys.path.remove(str(REPO / "bench"))
    phase = {
        "rps": 10.0,
        "ok": 100,
        "errors": 0,
        "timeouts": 0,
        "latency_ms": {"p50": 5.0, "p95": 8.0, "p99": 9.0},
        "memory_peak_mb": {"rss": 100.0, "pss": 90.0},
    }
    slow = {**phase, "rps": 2.0, "latency_ms": {"p50": 50.0, "p95": 80.0, "p99": 90.0}}
    meta = {
        "started": "t0",
        "finished": "t1",
        "client": "httpx",
        "client_timeout_s": 10,
        "duration_s": 1,
        "warmup_s": 1,
        "connections": [1, 16],
        "texts": {"count": 3, "source": "test"},
        "serve_options": {"--threads": "2"},
        "machine": {
            "cpu_model": "cpu",
            "cpus": 2,
            "platform": "linux",
            "python": "3",
            "simd_flags": ["avx2"],
            "vnni": False,
            "versions": {},
        },
        "argv": ["python", "bench/serve.py"],
    }
    serve = {
        "meta": meta,
        "systems": {
            "original": {"time_to_first_answer_s": 8.0, "phases": {"c1": slow, "c16": slow}},
            "qinggan-int8": {
                "time_to_first_answer_s": 1.0,
                "phases": {"c1": phase, "c16": phase},
                "in_process": {
                    "variant": "int8",
                    "single": {"p50_ms": 4.0},
                    "batched_best": {"texts_per_s": 11.0, "batch_size": 32},
                },
            },
        },
    }
    results = tmp_path / "results"
    results.mkdir()
    (results / "serve.json").write_text(json.dumps(serve))
    monkeypatch.setattr(report, "RESULTS", results)
    monkeypatch.setattr(report, "FINDINGS", tmp_path / "missing.md")
    text = report.render()
    assert "| qinggan-int8 | 5.0× more |" in text
    assert "10.0× faster" in text  # sequential p50 50 ms -> 5 ms
    assert "91 %" in text  # 10 req/s over HTTP vs 11 texts/s in process


@pytest.mark.slow
def test_wrk_latencies_are_the_requests_own(tiny_bundle, tmp_path: Path) -> None:
    """With one connection the requests' latencies can add up to at most the run's length
    (wrk's own statistics, "corrected" for coordinated omission, broke this)."""
    import shutil

    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    from serverproc import ServerProcess

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import loadgen
    finally:
        sys.path.remove(str(REPO / "bench"))
    texts = ["好", "很好，下次还来" * 20, "差", "服务一般般，环境还行" * 10]
    bodies = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    gen = loadgen.LoadGenerator("wrk", bodies, timeout_s=10)
    try:
        with ServerProcess(tiny_bundle.path) as server:
            for connections in (1, 4):
                result = gen.run(
                    f"{server.base_url}/analyze", connections=connections, duration_s=2
                )
                lat = result.latency_ms
                assert result.ok > 0 and result.errors == 0
                assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
                busy_s = result.ok * lat["mean"] / 1000  # summed over the connections
                assert busy_s <= connections * result.duration_s * 1.01, (result, busy_s)
                assert result.wrk_corrected_ms is not None
    finally:
        gen.close()


def test_builtins_bench_measures_and_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/builtins.py times a built-in over real-looking reviews; report.py renders it."""
    import gzip

    data = tmp_path / "data" / "reviews"
    data.mkdir(parents=True)
    rows = ["text,label"] + [f"第{i}家店服务很好，下次还来,1" for i in range(8)]
    with gzip.open(data / "test.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    out = tmp_path / "results" / "builtins.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "builtins.py"), "--data", str(tmp_path / "data"),
         "--models", "fast", "--texts", "8", "--rounds", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())["models"]["fast"]
    assert [r["round"] for r in result["rounds"]] == [0, 1]
    low, high = result["single_p50_ms_range"]
    assert 0 < low <= result["single_p50_ms"] <= high
    assert result["texts_per_s"] > 0

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import report
    finally:
        sys.path.remove(str(REPO / "bench"))
    monkeypatch.setattr(report, "RESULTS", out.parent)
    monkeypatch.setattr(report, "FINDINGS", tmp_path / "missing.md")
    text = report.render()
    assert "## Built-in models, one review at a time" in text
    assert "| `fast` |" in text and "p50 <= 3 ms" in text
