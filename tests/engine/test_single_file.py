"""Single-file checkpoints (ComfyUI / A1111 layouts) load through diffusers' from_single_file
with their pipeline's diffusers config, offline, and draw what their diffusers folder draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.engine.checkpoints import ldm_vae, qwenimage_transformer, write, zimage_transformer

from easel.catalog import Catalog
from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine
from easel.engine.families import stand_in_dir
from easel.engine.single_file import SingleFileError
from easel.services.weights.files import absence, components_in_file, weights_present

SPECS = (ImageSpec("a lighthouse at dusk", 5), ImageSpec("a red fox", 6))


@pytest.fixture(scope="module")
def zimage(model_cache: Path) -> Path:
    return stand_in_dir("easel/tiny-zimage", model_cache / "tiny")


@pytest.fixture(scope="module")
def qwenimage(model_cache: Path) -> Path:
    return stand_in_dir("easel/tiny-qwenimage", model_cache / "tiny")


def draw(engine: Engine, source: str, family: str) -> list[np.ndarray]:
    guidance = 0.0 if family == "zimage" else 3.0
    batch = EngineBatch(source, family, 64, 64, 2, guidance, SPECS)
    return [image.pixels for image in engine.generate(batch)]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_zimage_transformer_file_in_its_original_layout_draws_what_its_folder_draws(
    zimage: Path, model_cache: Path, tmp_path: Path
) -> None:
    """ComfyUI's diffusion_models/ layout: fused QKV, `model.diffusion_model.`; the VAE, the
    Qwen3 text encoder, tokenizer and scheduler come from the config folder."""
    file = write(tmp_path / "z_image_turbo_bf16.safetensors", zimage_transformer(zimage))
    assert components_in_file(file) == {"transformer", "unet"}  # the denoiser only
    engine = Engine(model_cache, device="cpu", configs={str(file): str(zimage)})
    pixels = draw(engine, str(file), "zimage")
    pipe = engine.pipeline(str(file))
    assert type(pipe).__name__ == "ZImagePipeline"
    assert same(pixels, draw(engine, "easel/tiny-zimage", "zimage"))
    # The weights really came from the file: a changed file draws something else.
    changed = zimage_transformer(zimage)
    key = next(k for k in changed if k.endswith(".qkv.weight"))
    changed[key] = changed[key] * 3.0
    other = write(tmp_path / "changed.safetensors", changed)
    engine.configs[str(other)] = str(zimage)
    assert not same(draw(engine, str(other), "zimage"), pixels)


def test_an_all_in_one_checkpoint_brings_its_own_vae(
    zimage: Path, model_cache: Path, tmp_path: Path
) -> None:
    """ComfyUI's checkpoints/ layout: the VAE in the file (LDM names under `vae.`) wins over the
    config folder's."""
    vae = ldm_vae(zimage)
    key = "vae.decoder.conv_out.weight"
    vae[key] = vae[key] * 0.5
    file = write(tmp_path / "z_image_aio.safetensors", {**zimage_transformer(zimage), **vae})
    assert "vae" in components_in_file(file)
    engine = Engine(model_cache, device="cpu", configs={str(file): str(zimage)})
    pixels = draw(engine, str(file), "zimage")
    loaded = engine.pipeline(str(file)).vae.decoder.conv_out.weight
    assert torch.equal(loaded, vae[key])
    assert not same(pixels, draw(engine, "easel/tiny-zimage", "zimage"))


def test_a_family_without_a_pipeline_level_loader_takes_its_denoiser_from_the_file(
    qwenimage: Path, model_cache: Path, tmp_path: Path
) -> None:
    """QwenImagePipeline has no from_single_file in diffusers 0.42: the transformer comes from
    QwenImageTransformer2DModel.from_single_file, the rest through from_pretrained."""
    file = write(tmp_path / "qwen_image_bf16.safetensors", qwenimage_transformer(qwenimage))
    engine = Engine(model_cache, device="cpu", configs={str(file): str(qwenimage)})
    assert same(draw(engine, str(file), "qwenimage"), draw(engine, "easel/tiny-qwenimage",
                                                             "qwenimage"))
    assert type(engine.pipeline(str(file))).__name__ == "QwenImagePipeline"


def test_a_single_file_loads_quantized_with_int8_weights(
    zimage: Path, model_cache: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torchao")
    from easel.engine.optimize import EngineOptions

    file = write(tmp_path / "z.safetensors", zimage_transformer(zimage))
    engine = Engine(model_cache, device="cpu", options=EngineOptions(weight_quant="int8"),
                    configs={str(file): str(zimage)})
    draw(engine, str(file), "zimage")
    weight = engine.pipeline(str(file)).transformer.layers[0].attention.to_q.weight
    assert type(weight).__name__ == "Int8Tensor" and weight.qdata.dtype == torch.int8
    assert engine.applied[str(file)] == ["weights=int8(denoiser)"]


def test_a_file_without_the_denoiser_or_config_is_refused_clearly(
    zimage: Path, model_cache: Path, tmp_path: Path
) -> None:
    vae_only = write(tmp_path / "ae.safetensors", ldm_vae(zimage))
    engine = Engine(model_cache, device="cpu", configs={str(vae_only): str(zimage)})
    with pytest.raises(SingleFileError, match="holds no ZImageTransformer2DModel weights"):
        engine.pipeline(str(vae_only))
    lonely = write(tmp_path / "z.safetensors", zimage_transformer(zimage))
    with pytest.raises(SingleFileError, match="needs `config`"):
        Engine(model_cache, device="cpu").pipeline(str(lonely))


def test_presence_needs_a_whole_file_and_a_config_with_what_the_file_lacks(
    zimage: Path, tmp_path: Path
) -> None:
    file = write(tmp_path / "z.safetensors", zimage_transformer(zimage))
    config = Path(shutil.copytree(zimage, tmp_path / "config"))
    assert weights_present(str(file), str(config))
    # The file brings the transformer: its config folder needs no transformer weights.
    (config / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    assert weights_present(str(file), str(config))
    # ... but the VAE it does not hold must be there.
    (config / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    reason = absence(str(file), str(config), "z") or ""
    assert f"the config {config} of z.safetensors" in reason and "vae" in reason
    assert absence(str(tmp_path / "gone.safetensors"), str(config)) == (
        f"the checkpoint {tmp_path / 'gone.safetensors'} does not exist: put the .safetensors "
        "file there, or point the backend's `source` at it in your catalog overlay "
        "(EASEL_CATALOG_FILE)")
    # An interrupted copy: shorter than its header says.
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 100])
    assert f"{file} is incomplete (truncated: {len(data) - 100} of {len(data)} bytes)" in (
        absence(str(file), str(zimage)) or "")


def overlay(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "overlay.toml"
    path.write_text(body)
    return path


def test_the_catalog_takes_a_single_file_source_with_its_config(tmp_path: Path) -> None:
    # A packaged backend pointed at a file keeps the hub id it replaces as its config.
    catalog = Catalog.load(overlay(tmp_path, '[backends.z-image-turbo]\n'
                                             'source = "/models/z_image_turbo_bf16.safetensors"\n'))
    backend = catalog.backends["z-image-turbo"]
    assert backend.config == "Tongyi-MAI/Z-Image-Turbo"
    assert backend.license.id == "unknown"  # other weights: their licence must be named
    explicit = Catalog.load(overlay(tmp_path, '[backends.z-image-turbo]\n'
                                              'source = "/models/z.safetensors"\n'
                                              'config = "/models/z-image-configs"\n'))
    assert explicit.backends["z-image-turbo"].config == "/models/z-image-configs"


@pytest.mark.parametrize(("body", "message"), [
    ('[backends.mine]\nsource = "/m/x.safetensors"\nfamily = "sdxl"\nsteps = 4\nguidance = 5.0\n',
     "set `config`"),
    ('[backends.mine]\nsource = "/m/x.ckpt"\nfamily = "sdxl"\nsteps = 4\nguidance = 5.0\n',
     "pickled checkpoint"),
    ('[backends.sdxl]\nconfig = "stabilityai/stable-diffusion-xl-base-1.0"\n',
     "`config` is for a single-file source"),
])
def test_the_catalog_refuses_a_single_file_it_could_not_load(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Catalog.load(overlay(tmp_path, body))
