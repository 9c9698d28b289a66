"""deploy/compose.yaml says what one GPU box needs: the GPU reserved, the image's two volumes,
the keys from a git-ignored env file, the healthcheck, a stop grace longer than easel's drain.
`docker compose config` checks it too where the Compose plugin is installed (it is not here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from easel.settings import Settings
from tests.deploy import dockerfile
from tests.deploy.dockerfile import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def service() -> dict[str, Any]:
    (only,) = compose()["services"].values()
    assert isinstance(only, dict)
    return only


def test_one_gpu_reserved_and_the_cuda_image_built() -> None:
    easel = service()
    (device,) = easel["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert "gpu" in device["capabilities"]
    built = dockerfile.read()
    assert easel["build"]["target"] == "cuda" and "cuda" in built.stages
    assert (COMPOSE.parent / easel["build"]["context"] / "Dockerfile").resolve() == (
        dockerfile.DOCKERFILE)


def test_the_images_volumes_are_named_volumes() -> None:
    mounts = dict(reversed(v.split(":")[:2]) for v in service()["volumes"])  # target -> source
    assert set(mounts) == set(dockerfile.read().stages["cuda"].json_form("VOLUME"))
    assert set(mounts.values()) <= set(compose()["volumes"])


def test_keys_come_from_an_env_file_that_git_ignores() -> None:
    env_file = service()["env_file"]
    assert env_file == "easel.env"
    example = (COMPOSE.parent / "easel.env.example").read_text()
    assert re.search(r"^EASEL_API_KEYS=", example, flags=re.M)
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q",
                              f"deploy/{env_file}"], check=False)
    assert ignored.returncode == 0, f"deploy/{env_file} (the keys) is not git-ignored"


def test_healthcheck_is_the_images_and_stop_outlasts_the_drain() -> None:
    easel = service()
    assert easel["healthcheck"]["test"] == [
        "CMD", *dockerfile.read().stages["cuda"].json_form("HEALTHCHECK")]
    assert easel["stop_signal"] == "SIGTERM"
    grace = re.fullmatch(r"(\d+)s", easel["stop_grace_period"])
    assert grace is not None and int(grace[1]) > Settings().shutdown_grace_seconds


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no Docker Compose plugin on this machine",
)
def test_docker_compose_config_accepts_it(checkout: Path) -> None:
    deploy = checkout / "deploy"
    shutil.copy(deploy / "easel.env.example", deploy / "easel.env")  # as docs/deploy.md says
    checked = subprocess.run(["docker", "compose", "-f", str(deploy / "compose.yaml"), "config",
                              "--quiet"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
