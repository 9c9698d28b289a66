"""LoRA adapters end to end on real pixels: adapters allow-listed with the real `easel lora
add` (the engine's check of the file), requests through easel's API and Runware's, the real
diffusers engine on the Fast tier's tiny pipeline, each image compared with diffusers called
directly with the same adapters and weights."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from easel.catalog import Catalog
from easel.cli import app
from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine
from easel.engine.families import call_kwargs, stand_in_dir
from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.loras import make_lora, wrong_base_lora
from tests.server_harness import inference

PROMPT = "a red fox in snow"
SEED = 7
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=1)


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "present.toml"
    path.write_text(PRESENT)
    return path


@pytest.fixture
def edge(make_edge: Callable[..., Edge], engine: Engine, catalog_file: Path) -> Edge:
    return make_edge(engine, catalog_file=catalog_file)  # type: ignore[arg-type]


def lora_cli(edge: Edge, catalog_file: Path, *args: str) -> Any:
    """`easel lora ...` as an operator runs it, on the edge's data dir and catalog."""
    return CliRunner().invoke(app, ["lora", *args, "--data-dir", str(edge.settings.data_dir)],
                              env={"EASEL_CATALOG_FILE": str(catalog_file)})


def runware_pixels(edge: Edge, **fields: Any) -> np.ndarray:
    task = inference(positivePrompt=PROMPT, seed=SEED, outputType="base64Data",
                     outputFormat="PNG", **fields)
    reply = edge.runware([task])
    assert reply.status_code == 200, reply.text
    return decode(reply.json()["data"][0]["imageBase64Data"])


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def diffusers_pixels(model_cache: Path, catalog_file: Path,
                     adapters: list[tuple[Path, float]]) -> np.ndarray:
    """The image diffusers draws on its own: the same saved pipeline, `load_lora_weights` and
    `set_adapters`, the call easel makes for this family."""
    import diffusers

    backend = Catalog.load(catalog_file).backends["flux2-klein-4b"]
    folder = stand_in_dir("easel/tiny-flux2", model_cache / "tiny")
    pipe = diffusers.Flux2KleinPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    names = []
    for i, (path, _weight) in enumerate(adapters):
        pipe.load_lora_weights(str(path), adapter_name=f"a{i}")
        names.append(f"a{i}")
    if names:
        pipe.set_adapters(names, [weight for _, weight in adapters])
    batch = EngineBatch("easel/tiny-flux2", "flux2", 64, 64, backend.steps, backend.guidance,
                        (ImageSpec(PROMPT, SEED),))
    generators = [torch.Generator(device="cpu").manual_seed(SEED)]
    with torch.inference_mode():
        images = pipe(**call_kwargs(batch, generators)).images
    return (np.clip(np.asarray(images[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_adapters_change_the_image_exactly_as_diffusers_applies_them(
    edge: Edge, catalog_file: Path, model_cache: Path, tmp_path: Path,
) -> None:
    ink = make_lora("flux2", tmp_path / "ink.safetensors", seed=1)
    oil = make_lora("flux2", tmp_path / "oil.safetensors", seed=2)
    for name, path in (("ink", ink), ("oil", oil)):
        added = lora_cli(edge, catalog_file, "add", name, str(path), "--base", "flux2-klein-4b")
        assert added.exit_code == 0, added.output
    plain = runware_pixels(edge)
    inked = runware_pixels(edge, lora=[{"model": "ink", "weight": 0.8}])
    both = runware_pixels(edge, lora=[{"model": "ink", "weight": 0.8},
                                      {"model": "oil", "weight": -0.6}])
    assert psnr(plain, inked) < 30 and psnr(inked, both) < 30  # each adapter changes it
    assert psnr(inked, diffusers_pixels(model_cache, catalog_file, [(ink, 0.8)])) >= 40
    assert psnr(both, diffusers_pixels(model_cache, catalog_file,
                                       [(ink, 0.8), (oil, -0.6)])) >= 40
    info = edge.client.get("/easel/info", headers=AUTH).json()
    assert sorted(info["engine"]["loaded_loras"]["easel/tiny-flux2"]) == ["ink", "oil"]
    # After adapters ran, a request without any is the base model's image, unchanged.
    assert np.array_equal(runware_pixels(edge), plain)
    assert psnr(plain, diffusers_pixels(model_cache, catalog_file, [])) >= 40


def test_easels_api_runs_an_adapter_and_its_image_differs(
    edge: Edge, catalog_file: Path, tmp_path: Path,
) -> None:
    ink = make_lora("flux2", tmp_path / "ink.safetensors", seed=1)
    assert lora_cli(edge, catalog_file, "add", "ink", str(ink), "--base",
                    "flux2-klein-4b").exit_code == 0
    images = []
    for loras in ([], [{"name": "ink", "weight": 1.0}]):
        reply = edge.client.post("/easel/jobs", headers=AUTH, json={
            "model": "google/imagen4-fast", "prompt": PROMPT, "seed": SEED,
            "output_format": "png", "loras": loras})
        assert reply.status_code == 202, reply.text
        job = edge.wait(reply.json()["job"])
        view = edge.client.get(f"/easel/jobs/{job.id}", headers=AUTH).json()
        url = view["outputs"][0]["url"]
        images.append(np.asarray(Image.open(io.BytesIO(
            edge.client.get(url, headers=AUTH).content)).convert("RGB")))
    assert psnr(images[0], images[1]) < 30


def test_the_cli_refuses_a_file_for_another_base_and_a_pickle(
    edge: Edge, catalog_file: Path, tmp_path: Path,
) -> None:
    wrong = wrong_base_lora(tmp_path / "for-flux2.safetensors", made_for="flux2")
    refused = lora_cli(edge, catalog_file, "add", "zed", str(wrong), "--base", "z-image-turbo")
    assert refused.exit_code != 0 and "zed" not in lora_cli(edge, catalog_file, "list").output
    assert "error:" in refused.output
    pickled = tmp_path / "ink.safetensors"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle named like safetensors
    refused = lora_cli(edge, catalog_file, "add", "ink", str(pickled), "--base",
                       "flux2-klein-4b")
    assert refused.exit_code != 0 and "is not a .safetensors file" in refused.output
    ckpt = tmp_path / "ink.ckpt"
    ckpt.write_bytes(b"\x80\x04")
    refused = lora_cli(edge, catalog_file, "add", "ink", str(ckpt), "--base", "flux2-klein-4b")
    assert refused.exit_code != 0 and "is not a .safetensors file" in refused.output


@pytest.mark.parametrize(("case", "words"), [
    ("a folder", "no such file"),
    ("no LoRA in it", "ink.safetensors holds no LoRA weights"),
    ("a scalar for a matrix", "lora_A.weight is not a LoRA matrix"),
])
def test_the_cli_refuses_a_file_that_is_no_lora_with_a_message_not_a_traceback(
    edge: Edge, catalog_file: Path, tmp_path: Path, case: str, words: str,
) -> None:
    from safetensors.torch import load_file, save_file

    source = tmp_path / "source.safetensors"
    if case == "a folder":
        source.mkdir()
    elif case == "no LoRA in it":
        save_file({}, str(source))
    else:
        state = load_file(str(make_lora("flux2", tmp_path / "ink.safetensors", seed=1)))
        state["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"] = torch.tensor(1.0)
        save_file(state, str(source))
    refused = lora_cli(edge, catalog_file, "add", "ink", str(source), "--base",
                       "flux2-klein-4b")
    assert isinstance(refused.exception, SystemExit) and refused.exit_code != 0
    assert "error:" in refused.output and words in refused.output


def test_easel_generate_takes_adapters_in_this_process(
    edge: Edge, catalog_file: Path, model_cache: Path, tmp_path: Path,
) -> None:
    ink = make_lora("flux2", tmp_path / "ink.safetensors", seed=1)
    assert lora_cli(edge, catalog_file, "add", "ink", str(ink), "--base",
                    "flux2-klein-4b").exit_code == 0
    env = {"EASEL_DATA_DIR": str(edge.settings.data_dir),
           "EASEL_CATALOG_FILE": str(catalog_file), "EASEL_URL": "http://127.0.0.1:9"}
    out = tmp_path / "out"
    made = CliRunner().invoke(app, ["generate", PROMPT, "--local", "--seed", str(SEED),
                                    "--format", "png", "-o", str(out), "--lora", "ink=0.8"],
                              env=env)
    assert made.exit_code == 0, made.output
    (written,) = out.glob("*.png")
    pixels = np.asarray(Image.open(written).convert("RGB"))
    assert psnr(pixels, diffusers_pixels(model_cache, catalog_file, [(ink, 0.8)])) >= 40
    assert '"ink"' in Image.open(written).info.get("parameters", "") + str(
        Image.open(written).info)
    refused = CliRunner().invoke(app, ["generate", PROMPT, "--local", "-o", str(out),
                                       "--lora", "oil=0.5"], env=env)
    assert refused.exit_code != 0 and "--lora[0]" in refused.output
    assert "no adapter 'oil'" in refused.output
