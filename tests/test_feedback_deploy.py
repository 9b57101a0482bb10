"""deploy/: the optional PostgreSQL wiring of the corrections store stays consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")


def _docs(path: Path) -> dict[str, Any]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d}


def test_the_store_url_comes_from_an_optional_secret() -> None:
    deployment = _docs(DEPLOY / "deployment.yaml")["Deployment"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["QINGGAN_FEEDBACK_DB"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "qinggan-feedback", "key": "url", "optional": True}


def test_the_postgres_overlay_adds_a_database_only_the_api_reaches() -> None:
    overlay = yaml.safe_load((DEPLOY / "feedback" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["..", "postgres.yaml"]
    docs = _docs(DEPLOY / "feedback" / "postgres.yaml")
    api_labels = _docs(DEPLOY / "deployment.yaml")["Deployment"]["spec"]["selector"]["matchLabels"]
    pod = docs["StatefulSet"]["spec"]["template"]
    assert docs["Service"]["spec"]["selector"] == pod["metadata"]["labels"] != api_labels
    port = docs["Service"]["spec"]["ports"][0]
    assert port["port"] == 5432 and port["targetPort"] == "postgres"
    container = pod["spec"]["containers"][0]
    assert {p["name"] for p in container["ports"]} == {"postgres"}
    password = {e["name"]: e for e in container["env"]}["POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "qinggan-postgres"
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == pod["metadata"]["labels"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == api_labels
    # The URL the docs tell users to store points at this Service and database.
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "@qinggan-postgres:5432/qinggan" in readme
