"""Weights an operator keeps on disk: a local diffusers folder that is missing or was copied
only in part, and a single-file checkpoint (ComfyUI's layout) whose configs `easel pull` fetches
from a hub on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.cli.fake_hub import FakeHub, Repo, running
from tests.cli.test_cli import run
from tests.cli.test_pull import hub_env
from tests.engine.checkpoints import write, zimage_transformer

from easel.engine.families import stand_in_dir
from easel.services.images.encoding import read_metadata

STANDARD = "imagen-4.0-generate-001"


@pytest.fixture(scope="module")
def zimage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_dir("easel/tiny-zimage", tmp_path_factory.mktemp("weights") / "tiny")


def local_backend(tmp_path: Path, source: Path | str, extra: str = "") -> Path:
    path = tmp_path / "overlay.toml"
    path.write_text(f'[backends.house]\nsource = "{source}"\nfamily = "zimage"\n'
                    f'license = "apache-2.0"\nsteps = 2\nguidance = 0.0\n{extra}'
                    '[tiers.standard]\nbackend = "house"\n')
    return path


def test_a_missing_local_directory_is_named_with_what_to_do_not_easel_pull(
    data_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "models" / "house-zimage"
    env = {"EASEL_CATALOG_FILE": str(local_backend(tmp_path, missing))}
    listing = run(["models"], data_dir, COLUMNS="250", **env)
    assert listing.returncode == 0, listing.stderr
    warning = next(line for line in listing.stderr.splitlines() if str(missing) in line)
    assert (f"the local directory {missing} does not exist: put a diffusers folder there "
            "(model_index.json and one folder per component), or point the backend's `source` "
            "at one in your catalog overlay (EASEL_CATALOG_FILE)") in warning
    assert "easel pull" not in warning
    pulled = run(["pull", "house"], data_dir, **env)
    assert pulled.returncode == 1
    assert "is a local directory, not a hub repository" in pulled.stderr
    assert f"the local directory {missing} does not exist" in pulled.stderr
    strict = run(["generate", "a fox", "--model", STANDARD, "--strict", "-o", str(tmp_path)],
                 data_dir, **env)
    assert strict.returncode == 2
    assert f"the local directory {missing} does not exist" in strict.stderr
    assert "easel pull" not in strict.stderr


def test_a_folder_copied_in_part_counts_as_absent_and_generate_serves_the_stand_in(
    zimage: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The crash this prevents: a truncated shard counted as present, then from_pretrained
    failed in the middle of `generate`."""
    copy = Path(shutil.copytree(zimage, tmp_path / "house"))
    weights = copy / "text_encoder" / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    env = {"EASEL_CATALOG_FILE": str(local_backend(tmp_path, copy))}
    out = tmp_path / "out"
    made = run(["generate", "a lighthouse", "--model", STANDARD, "--seed", "1", "-o", str(out)],
               data_dir, **env)
    assert made.returncode == 0, made.stderr
    assert f"the local directory {copy} is not a complete diffusers folder (text_encoder: " \
           "model.safetensors: truncated" in made.stderr
    metadata = read_metadata(next(out.glob("*.jpg")).read_bytes())
    assert metadata["stand_in"] is True and metadata["backend"] == "easel/mini"


def test_a_comfyui_checkpoint_pulls_its_configs_and_generates(
    zimage: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The operator's overlay names only the file; its config is the hub id of the packaged
    backend it replaces, which `easel pull` fetches without the transformer's weights."""
    file = write(tmp_path / "z_image_turbo_bf16.safetensors", zimage_transformer(zimage))
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(f'[backends.z-image-turbo]\nsource = "{file}"\nlicense = "apache-2.0"\n'
                       "steps = 2\n")
    home = tmp_path / "hf"
    offline = {"HF_HOME": str(home), "EASEL_CATALOG_FILE": str(overlay)}
    before = run(["models"], data_dir, COLUMNS="250", **offline)
    assert "the config Tongyi-MAI/Z-Image-Turbo of z_image_turbo_bf16.safetensors is not in " \
           "the Hugging Face cache" in before.stderr
    assert "`easel pull z-image-turbo` downloads it" in before.stderr
    hub = FakeHub({"Tongyi-MAI/Z-Image-Turbo": Repo(zimage)})
    with running(hub) as endpoint:
        pulled = run(["pull", "standard"], data_dir, **hub_env(endpoint, home),
                     EASEL_CATALOG_FILE=str(overlay))
    assert pulled.returncode == 0, pulled.stderr
    assert "vae/diffusion_pytorch_model.safetensors" in hub.downloads
    assert not [path for path in hub.downloads if path.startswith("transformer/") and
                path.endswith(".safetensors")]
    out = tmp_path / "out"
    made = run(["generate", "a lighthouse at dusk", "--model", STANDARD, "--seed", "3", "-o",
                str(out)], data_dir, **offline)
    assert made.returncode == 0, made.stderr
    metadata = read_metadata(next(out.glob("*.jpg")).read_bytes())
    assert metadata["stand_in"] is False and metadata["backend"] == str(file), made.stderr
