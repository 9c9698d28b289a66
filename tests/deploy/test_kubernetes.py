"""deploy/kubernetes: every manifest is valid against the Kubernetes API's own schemas (strict:
an unknown or misspelt field fails), and says what a scaled-out easel needs: API processes
without a worker behind /livez and /readyz probes, one GPU per worker, secrets only from the
Secrets the kustomization makes from filled-in copies of its examples (the workers' holding
neither the API keys nor the server's secret), workers scaled on the queue depth easel's
/metrics exports. And what a pod may do: no root, no privilege, no capability, no service
account token, a read-only root filesystem with a volume for each place easel writes, network
policies that deny all but what each pod needs, and images pinned by digest.

Checked from the YAML itself; where kubectl is installed, `kubectl kustomize` renders it too."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from easel.services.access.secrets import missing_shared_secret
from easel.services.metrics import Metrics
from easel.settings import Settings, env_name
from easel.store import JobStore
from tests.deploy import dockerfile
from tests.deploy.dockerfile import ROOT

FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # a version current clusters run; the schemas ship in the wheel
# What each Secret holds: every pod needs the job store and the bucket; only the API needs the
# server's secret and the API keys.
SECRETS = {"easel-secrets": {"EASEL_DATABASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
           "easel-api-secrets": {"EASEL_SECRET_KEY", "EASEL_API_KEYS"}}
SECRET_NAMES = set().union(*SECRETS.values())
API_ONLY = SECRETS["easel-api-secrets"]
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


def kustomization() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    return found


def env_file(name: str) -> dict[str, str]:
    """A KEY=VALUE file as kustomize reads it (comments and blank lines skipped)."""
    lines = (FOLDER / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")


def secret_refs(spec: dict[str, Any]) -> list[str]:
    return [source["secretRef"]["name"] for source in spec.get("envFrom", [])
            if "secretRef" in source]


def containers(deployment: str) -> list[dict[str, Any]]:
    spec = pod(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_secrets_come_only_from_the_secrets_the_kustomization_makes() -> None:
    config = by_kind("ConfigMap")["easel-config"]["data"]
    assert not SECRET_NAMES & set(config)
    generated = {g["name"]: g["envs"] for g in kustomization()["secretGenerator"]}
    assert set(generated) == set(SECRETS)
    for name, (copy,) in generated.items():
        # Made from the operator's filled-in copy of the example, which git never takes.
        assert git_ignored(FOLDER / copy), copy
        assert set(env_file(f"{copy}.example")) == SECRETS[name], copy
    referenced = {ref for deployment in ("easel-api", "easel-worker")
                  for c in containers(deployment) for ref in secret_refs(c)}
    assert referenced == set(SECRETS)  # no Secret that someone must make by hand
    assert not [d for d in manifests() if d["kind"] == "Secret"]  # nor one with values here
    assert set(secret_refs(container("easel-api"))) == set(SECRETS)


def test_the_worker_gets_neither_the_api_keys_nor_the_servers_secret() -> None:
    for c in containers("easel-worker"):
        given = set().union(*(SECRETS[ref] for ref in secret_refs(c)))
        given |= {e["name"] for e in c.get("env", [])}
        assert not given & API_ONLY, c["name"]
    api = set().union(*(SECRETS[ref] for ref in secret_refs(container("easel-api"))))
    assert api >= API_ONLY


def test_the_example_secret_does_not_start_until_it_is_filled_in() -> None:
    """Copied as it is, the example's blank EASEL_SECRET_KEY is refused by easel on the
    PostgreSQL store every pod shares: no pod makes a secret of its own."""
    store, api = env_file("easel-secrets.env.example"), env_file("easel-api-secrets.env.example")
    assert api["EASEL_SECRET_KEY"] == ""
    text = (FOLDER / "easel-api-secrets.env.example").read_text()
    assert "openssl rand -hex 32" in text and "secrets.token_hex(32)" in text
    as_copied = Settings(database=store["EASEL_DATABASE"], secret_key=api["EASEL_SECRET_KEY"])
    assert missing_shared_secret(as_copied) is not None
    filled = as_copied.model_copy(update={"secret_key": "0" * 64})
    assert missing_shared_secret(filled) is None


def git_ignored(path: Path) -> bool:
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


# -- what a pod may do ---------------------------------------------------------------------------


def effective(spec: dict[str, Any], c: dict[str, Any], field: str) -> Any:
    """A container's security setting: its own, else its pod's."""
    return c.get("securityContext", {}).get(field, spec["securityContext"].get(field))


@pytest.mark.parametrize("deployment", ["easel-api", "easel-worker"])
def test_no_container_runs_as_root_with_privileges_or_a_token(deployment: str) -> None:
    spec = pod(deployment)
    assert spec["automountServiceAccountToken"] is False  # easel never calls the API server
    for c in containers(deployment):
        assert effective(spec, c, "runAsNonRoot") is True, c["name"]
        assert effective(spec, c, "seccompProfile") == {"type": "RuntimeDefault"}, c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]


@pytest.mark.parametrize(("deployment", "image"), [("easel-api", "cpu"), ("easel-worker", "cuda")])
def test_every_place_easel_writes_is_a_volume(deployment: str, image: str) -> None:
    """With the root filesystem read-only, each place a process writes is mounted: the data dir
    and temporary files everywhere; where the engine runs, the weights' cache and the home
    (torch's, Triton's and the CUDA driver's kernel caches), places taken from the image."""
    stage = dockerfile.read().stages[image]
    env = stage.env()
    needed = {env["EASEL_DATA_DIR"], "/tmp"}
    if image == "cuda":
        needed |= {env["HF_HOME"], stage.one("WORKDIR")}
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    for c in containers(deployment):
        mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert needed <= set(mounted), (c["name"], needed - set(mounted))
        assert not any(m.get("readOnly") for m in c["volumeMounts"])
        assert all(mounted[path] in volumes for path in needed)


def test_images_are_pinned_by_digest_through_the_kustomization() -> None:
    """The manifests name each image by a bare name that only the kustomization's `images`
    resolves, to a digest; no tag anywhere (a tag can be moved to other contents)."""
    pinned = {i["name"]: i for i in kustomization()["images"]}
    used = set()
    for deployment in ("easel-api", "easel-worker"):
        for c in containers(deployment):
            assert re.fullmatch(r"[a-z0-9-]+", c["image"]), c["image"]  # no registry, tag, digest
            used.add(c["image"])
    assert used == set(pinned)
    for name, image in pinned.items():
        assert set(image) == {"name", "newName", "digest"}, name  # no newTag
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"]), name


def policies_for(deployment: str, direction: str) -> list[dict[str, Any]]:
    """The network policies that select the deployment's pods in that direction."""
    labels = by_kind("Deployment")[deployment]["spec"]["template"]["metadata"]["labels"]
    return [p["spec"] for p in by_kind("NetworkPolicy").values()
            if direction in p["spec"]["policyTypes"]
            and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]


def port_names(deployment: str) -> set[str]:
    return {p["name"] for c in containers(deployment) for p in c.get("ports", [])}


@pytest.mark.parametrize("deployment", ["easel-api", "easel-worker"])
def test_every_pod_is_denied_all_traffic_but_what_a_policy_allows(deployment: str) -> None:
    for direction in ("Ingress", "Egress"):
        assert {"podSelector", "policyTypes"} in [set(p) for p in policies_for(deployment,
                                                                               direction)]


def test_the_api_is_reached_on_its_port_only() -> None:
    rules = [r for p in policies_for("easel-api", "Ingress") for r in p.get("ingress", [])]
    assert rules and all([x["port"] for x in r["ports"]] == ["http"] for r in rules)
    assert port_names("easel-api") == {"http"}


def test_the_worker_is_reached_by_prometheus_on_the_metrics_port_only() -> None:
    """The worker's /metrics has no key, so only the monitoring namespace reaches it."""
    rules = [r for p in policies_for("easel-worker", "Ingress") for r in p.get("ingress", [])]
    assert rules
    for rule in rules:
        assert [x["port"] for x in rule["ports"]] == ["metrics"]
        assert rule["from"] and all(set(peer) == {"namespaceSelector"} for peer in rule["from"])
    assert port_names("easel-worker") == {"metrics"}


PRIVATE = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
    "100.64.0.0/10", "fc00::/7", "fe80::/10", "::1/128")]


@pytest.mark.parametrize("deployment", ["easel-api", "easel-worker"])
def test_no_pod_reaches_private_addresses_but_on_the_stores_ports(deployment: str) -> None:
    """Egress to any address is only to public ones (the cloud's metadata address is
    169.254.169.254); inside the cluster only DNS, PostgreSQL and the S3-compatible server."""
    rules = [r for p in policies_for(deployment, "Egress") for r in p.get("egress", [])]
    assert rules
    for rule in rules:
        if "to" not in rule:  # any address, but on these ports only
            assert {x["port"] for x in rule["ports"]} <= {53, 5432, 9000}, rule
            continue
        for peer in rule["to"]:
            block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            kept_out = [ipaddress.ip_network(n) for n in peer["ipBlock"].get("except", [])]
            for private in (p for p in PRIVATE if p.version == block.version):
                assert any(private.subnet_of(out) for out in kept_out  # type: ignore[arg-type]
                           if out.version == private.version), (deployment, private)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_only_with_the_filled_in_secrets(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(FOLDER, tmp_path / "kubernetes"))
    missing = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                             text=True, timeout=120, check=False)
    assert missing.returncode != 0 and "easel-secrets.env" in missing.stderr
    for example in folder.glob("*.env.example"):
        shutil.copy(example, folder / example.name.removesuffix(".example"))
    rendered = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    secrets = {d["metadata"]["name"]: set(d.get("data", {})) for d in docs
               if d["kind"] == "Secret"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert re.fullmatch(r"[^:@]+(:\d+)?/[^:@]+@sha256:[0-9a-f]{64}", c["image"])
            for ref in secret_refs(c):  # the generated Secret, by its hashed name
                assert ref in secrets, ref
                if deployment["metadata"]["name"] == "easel-worker":
                    assert not secrets[ref] & API_ONLY
