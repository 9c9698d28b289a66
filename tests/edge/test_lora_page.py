"""docs/lora.md runs as printed: each of its examples (marked as run by this test), in order,
in one directory that holds the reader's adapter files (tiny LoRAs made offline for the Fast
tier's family), against a real server whose Fast tier runs its family's tiny pipeline (adapters
need real weights: a stand-in refuses them), with the official SDKs of each example."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.test_loras import PRESENT
from tests.dialects.conftest import KEY, ROOT
from tests.docs.test_examples import command, page_blocks
from tests.loras import make_lora
from tests.server_harness import Server

PAGE = ROOT / "docs" / "lora.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("lora-page"), engine="tiny", EASEL_API_KEYS=KEY)
    srv.overlay = PRESENT
    srv.start()
    yield srv
    srv.stop()


def reader_environment(server: Server) -> dict[str, str]:
    """A fresh shell's, with what the page's setup exports given this server's values, and
    the server's data dir and catalog as this machine's defaults."""
    shell = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    return {**shell, "EASEL_URL": server.url, "EASEL_API_KEY": KEY,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "EASEL_DATA_DIR": str(server.data_dir),
            "EASEL_CATALOG_FILE": str(server.data_dir / "catalog.toml"), "EASEL_CONFIG": ""}


def test_the_lora_page_runs_as_printed(server: Server, tmp_path: Path) -> None:
    blocks = [b for b in page_blocks(PAGE)[0] if b.marker and "test_lora_page" in b.marker]
    assert len(blocks) >= 7
    make_lora("flux2", tmp_path / "ink.safetensors", seed=1)
    make_lora("flux2", tmp_path / "oil.safetensors", seed=2)
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = reader_environment(server)
    printed = []
    for block in blocks:
        proc = subprocess.run(command(block), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"{block.name}:\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip(), f"{block.name} printed nothing"
        printed.append(proc.stdout)
    listed, *_, after_removal = printed
    assert "ink" in listed and "oil" in listed and "civitai:132942@146296" in listed
    assert "ink" in after_removal and "oil" not in after_removal.split("removed", 1)[1]
    jobs = server.db("SELECT request FROM jobs")
    assert len(jobs) == len(blocks) - 2  # one job per request example
    assert all('"loras"' in row[0] for row in jobs)
