"""Fit the GPU you have, checked on the CPU with the tiny families of the default tiers: each
setting loads and draws, int8 weights really are int8 and smaller, offload installs diffusers'
hooks and leaves the pixels alone, and what needs CUDA says so before loading anything.

What a CPU cannot show: the GPU memory each setting saves (bench/gpu_fit.py measures it on a
GPU), sequential offload (accelerate's layer hooks fail with the CPU as their execution device),
and bitsandbytes' NF4 (diffusers refuses it without a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from easel.domain.generation import EngineBatch, ImageSpec, TwoPass
from easel.engine import Engine
from easel.engine.families import stand_in_dir
from easel.engine.fit import GpuFit, parameter_bytes
from easel.engine.optimize import EngineOptions, denoiser, psnr
from easel.engine.pipelines import gpu_bytes_needed
from easel.settings import Settings

SPECS = (ImageSpec("a lighthouse at dusk", 5), ImageSpec("a red fox", 6))
TIERS = ("flux2", "zimage", "qwenimage")  # fast, standard, ultra


def batch(family: str, size: int = 64, two_pass: TwoPass | None = None) -> EngineBatch:
    guidance = {"flux2": 1.0, "zimage": 0.0, "qwenimage": 4.0}[family]
    return EngineBatch(f"easel/tiny-{family}", family, size, size, 2, guidance, SPECS,
                       two_pass=two_pass)


def draw(engine: Engine, work: EngineBatch) -> list[np.ndarray]:
    return [image.pixels for image in engine.generate(work)]


@pytest.fixture(scope="module")
def exact(model_cache: Path) -> dict[str, list[np.ndarray]]:
    engine = Engine(model_cache, device="cpu", max_loaded=len(TIERS))
    return {family: draw(engine, batch(family)) for family in TIERS}


@pytest.mark.parametrize("family", TIERS)
def test_int8_weights_are_int8_tensors_a_fraction_of_the_bytes_and_draw_the_scene(
    model_cache: Path, exact: dict[str, list[np.ndarray]], family: str
) -> None:
    pytest.importorskip("torchao")
    plain = Engine(model_cache, device="cpu")
    full = parameter_bytes(denoiser(plain.pipeline(f"easel/tiny-{family}")))
    engine = Engine(model_cache, device="cpu", options=EngineOptions(weight_quant="int8"))
    pixels = draw(engine, batch(family))
    model = denoiser(engine.pipeline(f"easel/tiny-{family}"))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
    assert all(m.weight.qdata.dtype == torch.int8 for m in linears)
    # float32 weights on the CPU: int8 data plus a scale a row is about a quarter of the bytes
    # of the linear layers; norms, embeddings and convolutions stay as they were.
    assert parameter_bytes(model) < 0.5 * full
    assert engine.applied[f"easel/tiny-{family}"] == ["weights=int8(denoiser)"]
    # Lossy, but the same picture: far above two unrelated images (about 10 dB).
    assert min(psnr(a, b) for a, b in zip(pixels, exact[family], strict=True)) >= 25


def test_int8_text_encoders_when_asked(model_cache: Path) -> None:
    pytest.importorskip("torchao")
    options = EngineOptions(weight_quant="int8", weight_quant_text_encoders=True)
    engine = Engine(model_cache, device="cpu", options=options)
    draw(engine, batch("qwenimage"))
    encoder = engine.pipeline("easel/tiny-qwenimage").text_encoder
    projections = [m for n, m in encoder.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.endswith("q_proj")]
    assert projections and all(type(m.weight).__name__ == "Int8Tensor" for m in projections)
    assert engine.applied["easel/tiny-qwenimage"] == ["weights=int8(denoiser+text-encoders)"]


@pytest.mark.parametrize("family", TIERS)
def test_model_offload_installs_the_hooks_and_leaves_the_pixels_alone(
    model_cache: Path, exact: dict[str, list[np.ndarray]], family: str
) -> None:
    engine = Engine(model_cache, device="cpu", options=EngineOptions(offload="model"))
    pixels = draw(engine, batch(family))
    pipe = engine.pipeline(f"easel/tiny-{family}")
    assert type(denoiser(pipe)._hf_hook).__name__ == "CpuOffload"
    assert all(np.array_equal(a, b) for a, b in zip(pixels, exact[family], strict=True))
    assert engine.applied[f"easel/tiny-{family}"] == ["offload=model"]


def test_model_offload_with_int8_and_the_two_pass_refiner(model_cache: Path) -> None:
    """The img2img refiner shares the offloaded, quantized components (from_pipe)."""
    pytest.importorskip("torchao")
    engine = Engine(model_cache, device="cpu",
                    options=EngineOptions(offload="model", weight_quant="int8"))
    work = batch("zimage", size=128, two_pass=TwoPass(64, 64, 0.35))
    images = engine.generate(work)
    assert [image.pixels.shape for image in images] == [(128, 128, 3)] * 2
    assert engine.applied["easel/tiny-zimage"] == ["offload=model", "weights=int8(denoiser)"]


@pytest.mark.parametrize(("options", "message"), [
    (EngineOptions(offload="sequential"), "EASEL_OFFLOAD=sequential needs a CUDA device; this "
                                          "worker runs on cpu"),
    (EngineOptions(weight_quant="nf4"), "EASEL_WEIGHT_QUANT=nf4 needs a CUDA device"),
])
def test_what_needs_cuda_is_refused_on_the_cpu_before_loading(
    model_cache: Path, options: EngineOptions, message: str
) -> None:
    engine = Engine(model_cache, device="cpu", options=options)
    with pytest.raises(ValueError, match=message):
        engine.pipeline("easel/tiny-flux2")
    assert engine.loaded() == []


@pytest.mark.parametrize("family", ["flux2", "zimage", "qwenimage", "flux", "sd3", "sdxl",
                                    "sana"])
def test_vae_tiling_decodes_every_family(
    model_cache: Path, family: str
) -> None:
    """EASEL_VAE_TILING_PIXELS=1 tiles every decode: each family's VAE takes it."""
    engine = Engine(model_cache, device="cpu", options=EngineOptions(vae_tiling_pixels=1))
    guidance = 0.0 if family == "zimage" else 3.0
    images = engine.generate(EngineBatch(f"easel/tiny-{family}", family, 64, 64, 2, guidance,
                                         SPECS[:1]))
    assert images[0].pixels.shape == (64, 64, 3)
    assert engine.pipeline(f"easel/tiny-{family}").vae.use_tiling


def test_the_settings_reach_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASEL_OFFLOAD", "model")
    monkeypatch.setenv("EASEL_WEIGHT_QUANT", "int8")
    monkeypatch.setenv("EASEL_WEIGHT_QUANT_TEXT_ENCODERS", "1")
    engine = Engine.from_settings(Settings(data_dir=tmp_path))
    assert engine.options.fit == GpuFit("model", "int8", True)


def test_the_gpu_memory_a_load_needs_follows_the_offload(model_cache: Path) -> None:
    folder = stand_in_dir("easel/tiny-qwenimage", model_cache / "tiny")
    parts = {p.name: sum(f.stat().st_size for f in p.iterdir()) for p in folder.iterdir()
             if p.is_dir()}
    whole = gpu_bytes_needed(folder, GpuFit())
    assert gpu_bytes_needed(folder, GpuFit(offload="model")) == max(
        sum(f.stat().st_size for f in (folder / name).iterdir() if f.suffix == ".safetensors")
        for name in parts)
    assert gpu_bytes_needed(folder, GpuFit(offload="model")) < whole
    assert gpu_bytes_needed(folder, GpuFit(offload="sequential")) == 0


@pytest.mark.parametrize("family", ["flux", "zimage", "qwenimage", "sd3", "sdxl"])
def test_the_refiner_of_a_quantized_pipeline_shares_its_components(
    model_cache: Path, family: str
) -> None:
    """int8 pipelines get their img2img refiner through share_components (from_pipe would cast
    the quantized denoiser): the same component objects, every one the refiner needs."""
    import diffusers

    from easel.engine.families import family_of
    from easel.engine.fit import share_components

    pipe = Engine(model_cache, device="cpu").pipeline(f"easel/tiny-{family}")
    refiner = share_components(getattr(diffusers, family_of(family).refiner or ""), pipe)
    assert refiner.components.keys() <= pipe.components.keys()
    assert all(refiner.components[name] is pipe.components[name] for name in refiner.components)
    assert denoiser(refiner) is denoiser(pipe)
