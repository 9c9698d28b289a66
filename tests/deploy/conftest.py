"""A copy of the repository as a fresh clone has it: the files git tracks or would track, none
of the ignored ones (no .venv, no build output, no egg-info), in a temporary directory outside
the repository. `clean_checkout` is made once per session and never written to; a test that
writes (a build, an operator's env file) takes `checkout`, a copy of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT


@pytest.fixture(scope="session")
def clean_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("clean") / "easel"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # tracked files deleted in the work tree are gone from it too
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def copy_of(checkout: Path, parent: Path) -> Path:
    return Path(shutil.copytree(checkout, parent / "easel", symlinks=True))


@pytest.fixture
def checkout(clean_checkout: Path, tmp_path: Path) -> Path:
    return copy_of(clean_checkout, tmp_path)
