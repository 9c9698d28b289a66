"""`easel` end to end, as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.server_harness import QUICK_MINI, free_port

from easel.services.images.encoding import read_metadata

EASEL = [sys.executable, "-m", "easel.cli"]


def quick_mini(path: Path) -> str:
    """A catalog overlay: easel-mini, which stands in for every tier here, at 4 steps (it
    samples 20): what these tests check is the files, not the pictures."""
    path.write_text(QUICK_MINI)
    return str(path)


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with no server to find (a port nothing listens on): `generate` runs in-process,
    as on a machine where `easel serve` is not running."""
    environment = {**os.environ, "EASEL_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
                   "EASEL_PORT": str(free_port()), **env}
    return subprocess.run(
        EASEL + args, capture_output=True, text=True, env=environment, timeout=300, check=False
    )


def test_generate_writes_jpegs_at_the_imagen_size_with_seeds(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(
        [
            "generate",
            "a red fox in fresh snow",
            "--model",
            "google:2@3",
            "--aspect-ratio",
            "16:9",
            "--seed",
            "7",
            "-n",
            "2",
            "-o",
            str(out),
        ],
        data_dir,
        EASEL_CATALOG_FILE=quick_mini(tmp_path / "quick.toml"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert [line.split("seed=")[1] for line in lines] == ["7", "8"]
    files = sorted(out.glob("*.jpg"))
    assert len(files) == 2
    for path, seed in zip(files, (7, 8), strict=True):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (1408, 768)
        metadata = read_metadata(path.read_bytes())
        assert metadata["seed"] == seed and metadata["model"] == "google:2@3"
        assert metadata["stand_in"] is True and "not present" in metadata["stand_in_reason"]
    assert "warning:" in result.stderr and "stand-in" in result.stderr
    assert "denoising" in result.stderr  # the progress bar


def test_generate_same_seed_same_bytes(data_dir: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        result = run(
            [
                "generate",
                "a lighthouse at dusk",
                "--seed",
                "11",
                "--format",
                "png",
                "-o",
                str(tmp_path / name),
            ],
            data_dir,
            EASEL_NUM_THREADS="2",
            EASEL_CATALOG_FILE=quick_mini(tmp_path / "quick.toml"),
        )
        assert result.returncode == 0, result.stderr
        outputs.append(next((tmp_path / name).glob("*.png")).read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["generate", "a fox", "--model", "nope"], ["--model", "google:2@3"]),
        (["generate", "a fox", "--aspect-ratio", "2:1"], ["--aspect-ratio", "16:9"]),
        (["generate", "a fox", "-n", "21"], ["-n", "1..20"]),
        (["generate", "x"], ["PROMPT", "2..3000"]),
        (
            ["generate", "a fox", "--model", "google:2@3", "--resolution", "2k"],
            ["--resolution", "1k"],
        ),
        (["generate", "a fox", "--format", "gif"], ["--format", "webp"]),
        # Not a weight any dialect can carry: JSON has no NaN (it would crash the request).
        (["generate", "a fox", "--lora", "ink=nan"], ["--lora ink=nan", "must be a number"]),
    ],
)
def test_bad_input_is_one_line_naming_the_parameter_exit_2(
    data_dir: Path, tmp_path: Path, args: list[str], names: list[str]
) -> None:
    result = run([*args, "-o", str(tmp_path)], data_dir)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for name in names:
        assert name in message
    assert not list(tmp_path.glob("*.jpg"))


def test_strict_refuses_when_weights_are_absent(data_dir: Path, tmp_path: Path) -> None:
    result = run(["generate", "a fox", "--strict", "-o", str(tmp_path)], data_dir)
    assert result.returncode == 2
    assert "strict" in result.stderr and "easel pull" in result.stderr


def test_models_lists_every_id_tier_backend_weights_sizes_and_price(data_dir: Path) -> None:
    """On an 80-column terminal: no line is wider, every id is whole on its row with its API,
    sizes, images per request and price; each tier says its backend, weights and licence."""
    result = run(["models"], data_dir, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for model_id, fields in (("google:2@3", ["runware", "1K", "20", "0.020"]),
                             ("imagen-4.0-ultra-generate-preview-06-06",
                              ["google", "1K 2K*", "4", "0.060"]),
                             ("wavespeed-ai/imagen4", ["wavespeed", "1K 2K*", "4", "0.040"])):
        row = next(line for line in lines if line.split()[:1] == [model_id])
        assert re.split(r"\s{2,}", row.strip())[1:] == fields, row
    fast = next(line for line in lines if line.startswith("fast:"))
    assert "black-forest-labs/FLUX.2-klein-4B, weights absent -> easel/mini" in fast
    assert any("licence apache-2.0 [commercial]" in line for line in lines)
    assert "stand-in" in result.stderr


def models_json(data_dir: Path, **env: str) -> dict[str, dict[str, Any]]:
    result = run(["models", "--json"], data_dir, **env)
    assert result.returncode == 0, result.stderr
    return {entry["id"]: entry for entry in json.loads(result.stdout)}


def test_models_json_gives_the_2026_line_up_with_licences_and_size_paths(data_dir: Path) -> None:
    entries = models_json(data_dir)
    sources = {tier: next(e["source"] for e in entries.values() if e["tier"] == tier)
               for tier in ("fast", "standard", "ultra")}
    assert sources == {"fast": "black-forest-labs/FLUX.2-klein-4B",
                       "standard": "Tongyi-MAI/Z-Image-Turbo", "ultra": "Qwen/Qwen-Image"}
    for entry in entries.values():
        assert entry["license"]["id"] == "apache-2.0" and entry["license"]["commercial"]
        assert entry["refused"] is None
    paths = {s["size"]: s["path"] for s in entries["imagen-4.0-ultra-generate-001"]["sizes"]}
    assert paths["1024x1024"] == "native" and paths["2048x2048"] == "two-pass"


def test_pull_offline_fails_at_once_with_one_line_saying_what_it_tried(data_dir: Path) -> None:
    with socket.socket() as closed:  # a loopback port with nothing listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    result = run(
        ["pull", "fast"],
        data_dir,
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=endpoint,
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        HF_HUB_ETAG_TIMEOUT="5",
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "black-forest-labs/FLUX.2-klein-4B" in message and endpoint in message
    assert message.startswith("error: cannot reach") and "resume" not in message


def test_commercial_only_refuses_non_commercial_backends_everywhere(
    data_dir: Path, tmp_path: Path
) -> None:
    """A tier switched to FLUX.1-dev (non-commercial) is refused by generate and flagged by
    models once commercial-only is on."""
    overlay = tmp_path / "dev.toml"
    overlay.write_text('[tiers.standard]\nbackend = "flux-dev"\n')
    env = {"EASEL_CATALOG_FILE": str(overlay), "EASEL_COMMERCIAL_ONLY": "1"}
    entry = models_json(data_dir, **env)["imagen-4.0-generate-001"]
    assert entry["license"]["id"] == "flux-1-dev-non-commercial"
    assert not entry["license"]["commercial"] and "commercial_only" in entry["refused"]
    listing = run(["models"], data_dir, COLUMNS="250", **env)
    assert "does not allow commercial use" in listing.stderr
    refused = run(["generate", "a fox", "--model", "imagen-4.0-generate-001", "-o",
                   str(tmp_path)], data_dir, **env)
    assert refused.returncode == 2
    assert "FLUX.1 [dev] Non-Commercial License" in refused.stderr
    assert "commercial_only" in refused.stderr  # (Apache tiers still run: test_rest.py)


def test_pull_of_an_unknown_name_exit_2(data_dir: Path) -> None:
    result = run(["pull", "nothing-like-this"], data_dir)
    assert result.returncode == 2 and "fast" in result.stderr


def test_version(data_dir: Path) -> None:
    from easel import __version__

    done = run(["--version"], data_dir)
    assert done.returncode == 0 and done.stdout.strip() == f"easel {__version__}"


def test_config_show_fits_80_columns_and_never_cuts_a_value(data_dir: Path) -> None:
    deep = data_dir / ("a-rather-long-folder-name-" * 3) / "catalog.toml"
    deep.parent.mkdir(parents=True)
    deep.write_text("")
    result = run(["config", "show"], data_dir, COLUMNS="80", EASEL_CATALOG_FILE=str(deep))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    header = next(line for line in lines if line.startswith("setting"))
    value, source = header.index("value"), header.index("from")
    start = next(i for i, line in enumerate(lines) if line.startswith("EASEL_CATALOG_FILE"))
    pieces = [lines[start][value:source].strip()]
    for line in lines[start + 1:]:
        if line[:value].strip():  # the next setting's row
            break
        pieces.append(line[value:source].strip())
    assert "".join(pieces) == str(deep)  # folded over lines, whole


def test_help_shows_no_type_for_on_off_flags() -> None:
    for command in (["serve"], ["jobs", "list"], []):
        shown = subprocess.run([*EASEL, *command, "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "100"}, timeout=60)
        assert shown.returncode == 0 and "--help" in shown.stdout
        assert "<bool>" not in shown.stdout, shown.stdout
