"""docs/deploy.md: the blocks it marks `<!-- example: run by tests/deploy/test_docs.py -->` run
here as printed, from a checkout whose .venv is the venv the tests run in (the other runnable
blocks are run by tests/docs), and the versions it names are the Dockerfile's and easel's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import easel
from tests.deploy import dockerfile
from tests.deploy.dockerfile import ROOT

PAGE = ROOT / "docs" / "deploy.md"
MARKER = "<!-- example: run by tests/deploy/test_docs.py"


def marked_blocks() -> list[tuple[int, str]]:
    """(line, code) of each fenced block whose preceding line is this file's marker."""
    lines = PAGE.read_text().splitlines()
    return [(token.map[0] + 1, token.content)
            for token in MarkdownIt("commonmark").parse(PAGE.read_text())
            if token.type == "fence" and token.map and token.map[0] > 0
            and lines[token.map[0] - 1].startswith(MARKER)]


def test_the_page_marks_blocks_for_this_file() -> None:
    assert marked_blocks()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="the block runs systemd-analyze, which is not installed")
@pytest.mark.parametrize(("line", "code"), marked_blocks(), ids=lambda v: str(v)[:20])
def test_marked_block_runs_from_a_checkout(line: int, code: str, checkout: Path) -> None:
    (checkout / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, f"docs/deploy.md:{line}\n{ran.stdout}\n{ran.stderr}"
    assert ran.stdout.strip(), f"docs/deploy.md:{line} printed nothing"


def test_the_versions_named_are_the_dockerfiles_and_the_packages() -> None:
    page = PAGE.read_text()
    built = dockerfile.read()
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    for named in (built.base_of("cuda"), built.base_of("cpu"),
                  f"torch=={built.args['TORCH_VERSION']}",
                  f"easel-{easel.__version__}-py3-none-any.whl", f"easel:{easel.__version__}-cuda"):
        assert named in page, named
    assert f"image: easel:{easel.__version__}-cuda" in compose
