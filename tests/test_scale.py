"""Ray scale-out: score_dataset on a local instance, --engine ray, and the missing-extra error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qinggan.bundle import Bundle
from qinggan.engine import load
from qinggan.errors import MissingExtraError
from qinggan.files import LocalScorer, ScoreOptions, score_file

TEXTS = ["这家酒店很好，服务棒", "太差了，非常失望", "", "喜欢，满意", "垃圾，糟糕"]


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from qinggan import scale

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(MissingExtraError, match=r"qinggan\[ray\]"):
        scale.require_ray()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[object]:
    """One local Ray instance for the whole session."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'qinggan[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_score_dataset_on_local_ray(local_ray: object, tiny_bundle: Bundle) -> None:
    import ray.data

    from qinggan.scale import score_dataset

    rows = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(200)]
    # Four blocks, made in the driver: a fixed pool of 2 actors holds both CPUs, so
    # nothing may need a CPU task (a read or a repartition would wait for ever).
    blocks = [pa.Table.from_pylist(rows[i : i + 50]) for i in range(0, 200, 50)]
    ds = ray.data.from_arrow(blocks)
    scored = score_dataset(ds, tiny_bundle.path, concurrency=2, batch_size=16)
    out = scored.take_all()
    assert sorted(r["id"] for r in out) == list(range(200))
    by_id = {r["id"]: r for r in out}
    assert by_id[0]["label"] == "Positive" and by_id[1]["label"] == "Negative"
    assert by_id[2]["error"] == "empty text" and by_id[2]["label"] is None
    assert by_id[3]["label_zh"] == "正面"
    local = load(tiny_bundle.path, threads=1).predict([TEXTS[0]])[0]
    assert by_id[0]["score_Positive"] == pytest.approx(local.scores["Positive"], abs=1e-6)


@pytest.mark.slow
def test_ray_engine_matches_local_engine(
    local_ray: object, tiny_bundle: Bundle, tmp_path: Path
) -> None:
    from qinggan.scale import RayChunkScorer

    src = tmp_path / "in.parquet"
    texts = [TEXTS[i % len(TEXTS)] + str(i) for i in range(500)]
    pq.write_table(pa.table({"n": list(range(500)), "text": texts}), src)
    options = ScoreOptions(chunk_size=32, progress=False)
    local = LocalScorer(load(tiny_bundle.path, threads=1))
    score_file(str(src), str(tmp_path / "local.parquet"), local, options)
    scorer = RayChunkScorer(tiny_bundle.path, concurrency=2)
    try:
        summary = score_file(str(src), str(tmp_path / "ray.parquet"), scorer, options)
    finally:
        scorer.close()
    assert summary.rows == 500
    assert scorer.identity() == local.identity()  # same fingerprint: either engine can resume
    assert pq.read_table(tmp_path / "ray.parquet") == pq.read_table(tmp_path / "local.parquet")


def test_deploy_manifests_are_consistent() -> None:
    """deploy/: probes on real routes, one port name throughout, HPA on the Deployment."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    docs = {
        d["kind"]: d
        for name in ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
        for d in yaml.safe_load_all((deploy / name).read_text(encoding="utf-8"))
    }
    kustomization = yaml.safe_load((deploy / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [
        "deployment.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "service.yaml",
    ]
    deployment = docs["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert ports["http"] == int(env["QINGGAN_PORT"])
    assert env["QINGGAN_THREADS"] == container["resources"]["limits"]["cpu"]
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"] == labels
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
