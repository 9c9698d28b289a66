"""`easel lora add` from the Hugging Face Hub: the real huggingface_hub download (into the HF
cache) against a hub on loopback, then the offline server side using it; a file the repo does
not hold is one line naming it."""

from __future__ import annotations

from pathlib import Path

from tests.cli.fake_hub import FakeHub, Repo, running
from tests.cli.test_cli import run
from tests.cli.test_pull import hub_env
from tests.core.test_loras import PRESENT
from tests.loras import make_lora


def test_an_adapter_is_added_from_a_hub_repository(data_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    make_lora("flux2", repo / "ink.safetensors", seed=1)
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    hub = FakeHub({"acme/ink-lora": Repo(repo)})
    with running(hub) as endpoint:
        env = {**hub_env(endpoint, tmp_path / "hf"), "EASEL_CATALOG_FILE": str(catalog)}
        added = run(["lora", "add", "ink", "acme/ink-lora", "--file", "ink.safetensors",
                     "--base", "flux2-klein-4b", "--license", "apache-2.0"], data_dir, **env)
        assert added.returncode == 0, added.stderr
        assert "ink: diffusers LoRA for flux2-klein-4b, rank 4" in added.stdout
        assert "ink.safetensors" in hub.downloads
        missing = run(["lora", "add", "oil", "acme/ink-lora", "--file", "oil.safetensors",
                       "--base", "flux2-klein-4b"], data_dir, **env)
        assert missing.returncode == 2 and missing.stderr.startswith("error: acme/ink-lora/oil")
        assert len(missing.stderr.strip().splitlines()) == 1
    listed = run(["lora", "list"], data_dir, EASEL_CATALOG_FILE=str(catalog))
    assert listed.returncode == 0
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("ink\t")]
    assert row.split("\t")[:5] == ["ink", "flux2-klein-4b", "1", "-", "apache-2.0"]
