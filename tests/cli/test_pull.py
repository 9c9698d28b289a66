"""`easel pull` against a hub on loopback: the licence before the download, the Hugging Face
cache as the place weights live, completeness of a snapshot, gated repositories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.cli.fake_hub import FakeHub, Repo, running
from tests.cli.test_cli import run

from easel.engine.families import stand_in_dir
from easel.services.images.encoding import read_metadata
from easel.services.weights.files import snapshot_gap

REPO = "acme/tiny-zimage"


@pytest.fixture(scope="module")
def zimage_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Z-Image diffusers folder (the stand-in's classes and configs), as a hub holds it."""
    return stand_in_dir("easel/tiny-zimage", tmp_path_factory.mktemp("hub") / "tiny")


def hub_env(endpoint: str, home: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_HOME": str(home),
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "10"}


def overlay(path: Path) -> Path:
    path.write_text(f'[backends.acme]\nsource = "{REPO}"\nfamily = "zimage"\n'
                    'license = "apache-2.0"\nsteps = 2\nguidance = 0.0\nnegative_prompt = false\n'
                    '[tiers.standard]\nbackend = "acme"\n')
    return path


def test_pull_prints_the_licence_downloads_and_the_cached_snapshot_serves(
    zimage_folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    hub = FakeHub({REPO: Repo(zimage_folder)})
    home = tmp_path / "hf"
    with running(hub) as endpoint:
        env = hub_env(endpoint, home)
        pulled = run(["pull", REPO], data_dir, **env)
        assert pulled.returncode == 0, pulled.stderr
        first, *_rest, last = pulled.stdout.strip().splitlines()
        assert first == f"{REPO}: licence apache-2.0 (as its model card declares; not in the " \
                        "catalog)"
        snapshot = Path(last.split(" -> ")[1])
        assert snapshot_gap(snapshot) is None and home in snapshot.parents
        assert "transformer/diffusion_pytorch_model.safetensors" in hub.downloads

    # The server side loads hub ids from the cache only: the hub is gone now.
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home),
               "EASEL_CATALOG_FILE": str(overlay(tmp_path / "acme.toml"))}
    listing = run(["models"], data_dir, COLUMNS="250", **offline)
    assert listing.returncode == 0, listing.stderr
    assert f"{REPO}" in listing.stdout and "present" in listing.stdout
    out = tmp_path / "out"
    made = run(["generate", "a lighthouse at dusk", "--model", "imagen-4.0-generate-001",
                "--seed", "3", "-o", str(out)], data_dir, **offline)
    assert made.returncode == 0, made.stderr
    metadata = read_metadata(next(out.glob("*.jpg")).read_bytes())
    assert metadata["backend"] == REPO and metadata["stand_in"] is False
    assert metadata["license"] == "apache-2.0"

    # An interrupted pull leaves a shard out: not counted as present, and pull fetches it again.
    weights = snapshot / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.resolve().unlink()  # the blob in the cache, and the snapshot's link to it
    weights.unlink()
    assert "weights" in (snapshot_gap(snapshot) or "")
    listing = run(["models"], data_dir, COLUMNS="250", **offline)
    assert "absent -> easel/mini" in listing.stdout
    with running(hub) as endpoint:
        hub.downloads.clear()
        again = run(["pull", REPO], data_dir, **hub_env(endpoint, home))
    assert again.returncode == 0, again.stderr
    assert hub.downloads == ["transformer/diffusion_pytorch_model.safetensors"]
    assert snapshot_gap(snapshot) is None


def test_a_catalog_backend_shows_its_licence_before_the_download(
    data_dir: Path, tmp_path: Path
) -> None:
    with running(FakeHub()) as endpoint:  # the hub has no such repository
        result = run(["pull", "ultra"], data_dir, **hub_env(endpoint, tmp_path / "hf"))
    assert result.stdout.splitlines()[0] == (
        "Qwen/Qwen-Image: licence Apache License 2.0 (commercial use allowed), "
        "https://www.apache.org/licenses/LICENSE-2.0")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Qwen/Qwen-Image was not found" in result.stderr


def test_a_gated_repository_says_how_to_log_in(
    zimage_folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    hub = FakeHub({"acme/gated": Repo(zimage_folder, gated=True)})
    with running(hub) as endpoint:
        result = run(["pull", "acme/gated"], data_dir, **hub_env(endpoint, tmp_path / "hf"))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "acme/gated is gated" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert f"{endpoint}/acme/gated" in message


def test_snapshot_gap_names_what_a_folder_lacks(zimage_folder: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(zimage_folder, tmp_path / "copy"))
    assert snapshot_gap(copy) is None
    (copy / "vae" / "config.json").unlink()
    shutil.rmtree(copy / "scheduler")
    assert snapshot_gap(copy) == "scheduler: the folder is missing"
    index = json.loads((copy / "model_index.json").read_text())
    del index["scheduler"]
    (copy / "model_index.json").write_text(json.dumps(index))
    assert snapshot_gap(copy) is None  # vae: weights without config is for diffusers to judge
    (copy / "model_index.json").unlink()
    assert snapshot_gap(copy) == "model_index.json is missing"


def test_snapshot_gap_wants_weights_a_plain_from_pretrained_loads(
    zimage_folder: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(zimage_folder, tmp_path / "copy"))
    vae = copy / "vae"
    (vae / "diffusion_pytorch_model.safetensors").rename(
        vae / "diffusion_pytorch_model.fp16.safetensors")
    assert "a plain from_pretrained loads" in (snapshot_gap(copy) or "")
    (vae / "diffusion_pytorch_model.fp16.safetensors").unlink()
    shard = {"a": torch.zeros(4)}
    save_file(shard, vae / "diffusion_pytorch_model-00001-of-00002.safetensors")
    assert "has no diffusion_pytorch_model.safetensors.index.json" in (snapshot_gap(copy) or "")
    (vae / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                        "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}))
    assert "00002-of-00002" in (snapshot_gap(copy) or "")
    save_file(shard, vae / "diffusion_pytorch_model-00002-of-00002.safetensors")
    assert snapshot_gap(copy) is None


def test_snapshot_gap_finds_a_truncated_weight_file(zimage_folder: Path, tmp_path: Path) -> None:
    """An interrupted copy (rsync, cp) leaves a file shorter than its safetensors header says;
    the hub cache never does (it renames a blob only when complete), a local folder can."""
    copy = Path(shutil.copytree(zimage_folder, tmp_path / "copy"))
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(size - 1)
    assert snapshot_gap(copy) == (f"transformer: diffusion_pytorch_model.safetensors: truncated: "
                                  f"{size - 1} of {size} bytes")
    weights.write_bytes(b"\x00" * 3)
    assert "shorter than a safetensors header" in (snapshot_gap(copy) or "")


def test_files_pull_skips_on_purpose_do_not_make_the_snapshot_incomplete(
    zimage_folder: Path, data_dir: Path, tmp_path: Path
) -> None:
    """huggingface_hub keeps the repository's file list and calls a cached snapshot incomplete
    when any listed file is missing; a README and an fp16 variant, which `easel pull` skips,
    must not turn real weights into a stand-in."""
    repo = Path(shutil.copytree(zimage_folder, tmp_path / "repo"))
    (repo / "README.md").write_text("# tiny Z-Image\n")
    shutil.copy(repo / "vae" / "diffusion_pytorch_model.safetensors",
                repo / "vae" / "diffusion_pytorch_model.fp16.safetensors")
    hub = FakeHub({REPO: Repo(repo)})
    home = tmp_path / "hf"
    with running(hub) as endpoint:
        pulled = run(["pull", REPO], data_dir, **hub_env(endpoint, home))
    assert pulled.returncode == 0, pulled.stderr
    assert "README.md" not in hub.downloads
    assert "vae/diffusion_pytorch_model.fp16.safetensors" not in hub.downloads
    offline = {"HF_HOME": str(home), "EASEL_CATALOG_FILE": str(overlay(tmp_path / "acme.toml"))}
    listing = run(["models"], data_dir, COLUMNS="250", **offline)
    row = next(line for line in listing.stdout.splitlines() if REPO in line)
    assert "present" in row, listing.stderr
