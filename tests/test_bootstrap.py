"""scripts/bootstrap's choice of torch build, as `make serve` makes it: CUDA only where an NVIDIA
GPU is listed, else PyTorch's CPU build (never the GBs of CUDA wheels a plain install brings);
and serving never installs the developer tools."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def which_torch(tmp_path: Path, nvidia_smi: str | None, **env: str
                ) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        fake.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"  # no real nvidia-smi of this machine's
    return subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap"), "which-torch"],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "PATH": path, **env})


@pytest.mark.parametrize(("nvidia_smi", "build"), [
    (None, "cpu"),  # no driver at all
    ("echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'", "cuda"),
    ("echo 'No devices were found'; exit 6", "cpu"),  # a driver but no GPU
])
def test_the_build_follows_the_machine(tmp_path: Path, nvidia_smi: str | None, build: str) -> None:
    chosen = which_torch(tmp_path, nvidia_smi)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == build


def test_easel_torch_chooses_and_a_bad_value_is_refused(tmp_path: Path) -> None:
    assert which_torch(tmp_path, None, EASEL_TORCH="cuda").stdout.strip() == "cuda"
    bad = which_torch(tmp_path, None, EASEL_TORCH="rocm")
    assert bad.returncode == 2 and "EASEL_TORCH must be cpu or cuda" in bad.stderr


def test_serving_installs_no_developer_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    served = " ".join(project["dependencies"]).lower()
    for tool in ("pytest", "mypy", "ruff", "schemathesis", "playwright", "torch"):
        assert tool not in served, tool
    dev = " ".join(project["optional-dependencies"]["dev"]).lower()
    assert "pytest" in dev and "mypy" in dev
