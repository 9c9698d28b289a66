"""deploy/kubernetes: every manifest is valid against the Kubernetes API's own schemas (strict:
an unknown or misspelt field fails), and says what a scaled-out easel needs: API processes
without a worker behind /livez and /readyz probes, one GPU per worker, secrets only from the
Secret, workers scaled on the queue depth easel's /metrics exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from easel.services.metrics import Metrics
from easel.settings import Settings, env_name
from easel.store import JobStore
from tests.deploy.dockerfile import ROOT

FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # a version current clusters run; the schemas ship in the wheel
SECRET_NAMES = {"EASEL_DATABASE", "EASEL_SECRET_KEY", "EASEL_API_KEYS", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY"}
AWS_NAMES = {"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def manifests() -> list[dict[str, Any]]:
    listed = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())["resources"]
    docs: list[dict[str, Any]] = []
    for name in listed:
        docs.extend(d for d in yaml.safe_load_all((FOLDER / name).read_text()) if d)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def pod(deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind("Deployment")[deployment]["spec"]["template"]["spec"]
    return spec


def container(deployment: str) -> dict[str, Any]:
    (only,) = pod(deployment)["containers"]
    assert isinstance(only, dict)
    return only


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((FOLDER / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_manifest_is_valid_against_the_kubernetes_schemas(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    broken = by_kind("Deployment")["easel-api"]
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_api_runs_no_worker_and_is_probed() -> None:
    api = container("easel-api")
    assert api["args"][:2] == ["serve", "--no-worker"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert api["image"].endswith("-cpu")  # no model runs there
    assert "nvidia.com/gpu" not in api["resources"].get("limits", {})


def test_each_worker_gets_one_gpu_and_drains_before_it_is_killed() -> None:
    worker = container("easel-worker")
    assert worker["args"] == ["worker"]
    assert worker["image"].endswith("-cuda")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert worker["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "metrics": int(env["EASEL_WORKER_METRICS_PORT"])}
    grace = Settings().shutdown_grace_seconds
    for name in ("easel-api", "easel-worker"):
        assert pod(name)["terminationGracePeriodSeconds"] > grace + 30


def test_secrets_come_only_from_the_secret() -> None:
    config = by_kind("ConfigMap")["easel-config"]["data"]
    assert not SECRET_NAMES & set(config)
    for name in ("easel-api", "easel-worker"):
        sources = container(name)["envFrom"]
        assert {"secretRef": {"name": "easel-secrets"}} in sources
    example = (FOLDER / "secrets.env.example").read_text().splitlines()
    named = {line.split("=", 1)[0] for line in example if "=" in line and line[0] != "#"}
    assert named == SECRET_NAMES
    assert git_ignored(FOLDER / "easel-secrets.env")  # the filled-in copy the docs name


def git_ignored(path: Path) -> bool:
    import subprocess

    found = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False)
    return found.returncode == 0


def test_every_setting_named_is_one_easel_reads() -> None:
    known = {env_name(field) for field in Settings.model_fields} | AWS_NAMES
    config = set(by_kind("ConfigMap")["easel-config"]["data"])
    worker_env = {e["name"] for e in container("easel-worker")["env"]}
    assert (config | worker_env) - known == set()


def test_workers_scale_on_the_queue_depth_easel_exports(tmp_path: Path) -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["easel-worker"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "easel-worker"
    (metric,) = hpa["metrics"]
    name = metric["external"]["metric"]["name"]
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create()
    exported = Metrics(store).render().decode()
    assert f"\n{name} " in exported or exported.startswith(f"{name} ")
