"""The engine on the real diffusers pipeline classes (tiny random weights, loaded from disk)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import EngineBatch, ImageSpec, TwoPass
from easel.engine import Engine
from easel.engine.families import TINY_MODELS
from easel.engine.families import stand_in_dir as ensure_tiny

FAMILIES = ["flux", "flux2", "zimage", "qwenimage", "sd3", "sdxl", "sana", "mini"]
PIPELINE_CLASSES = {
    "flux": "FluxPipeline",
    "flux2": "Flux2KleinPipeline",
    "zimage": "ZImagePipeline",
    "qwenimage": "QwenImagePipeline",
    "sd3": "StableDiffusion3Pipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sana": "SanaPipeline",
    "mini": "EaselMiniPipeline",
}


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=4)


def batch(
    family: str, *specs: ImageSpec, size: tuple[int, int] = (64, 64), steps: int = 2
) -> EngineBatch:
    return EngineBatch(f"easel/tiny-{family}", family, size[0], size[1], steps, 3.0, specs)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_from_its_saved_directory_and_generates(
    engine: Engine, model_cache: Path, family: str
) -> None:
    directory = ensure_tiny(f"easel/tiny-{family}", model_cache / "tiny")
    assert (directory / "model_index.json").exists()
    assert any(directory.rglob("*.safetensors"))
    images = engine.generate(
        batch(
            family,
            ImageSpec("a red fox in snow", 1),
            ImageSpec("a blue house", 2, "green"),
            size=(128, 64),
        )
    )
    assert type(engine.pipeline(f"easel/tiny-{family}")).__name__ == PIPELINE_CLASSES[family]
    assert [im.pixels.shape for im in images] == [(64, 128, 3)] * 2
    assert [im.seed for im in images] == [1, 2]
    assert images[0].pixels.dtype == np.uint8
    assert not np.array_equal(images[0].pixels, images[1].pixels)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_pixels_and_other_seed_other_pixels(engine: Engine, family: str) -> None:
    first = engine.generate(batch(family, ImageSpec("a lighthouse", 42)))
    again = engine.generate(batch(family, ImageSpec("a lighthouse", 42)))
    other = engine.generate(batch(family, ImageSpec("a lighthouse", 43)))
    assert np.array_equal(first[0].pixels, again[0].pixels)
    assert not np.array_equal(first[0].pixels, other[0].pixels)


def test_tiny_weights_are_identical_across_builds(tmp_path: Path, model_cache: Path) -> None:
    a = ensure_tiny("easel/tiny-flux", tmp_path / "a")
    b = ensure_tiny("easel/tiny-flux", model_cache / "tiny")
    name = "transformer/diffusion_pytorch_model.safetensors"
    assert (a / name).read_bytes() == (b / name).read_bytes()


def test_mixed_seed_batch_reproduces_and_matches_single_runs(engine: Engine) -> None:
    specs = (ImageSpec("a red fox", 5), ImageSpec("a cat", 9, "blue"), ImageSpec("a red fox", 6))
    mixed = engine.generate(batch("sdxl", *specs))
    again = engine.generate(batch("sdxl", *specs))
    assert [im.seed for im in mixed] == [5, 9, 6]
    for a, b in zip(mixed, again, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
    # Each image depends on its own seed and prompt only, not on its neighbours in the batch.
    # (Batched matmuls may round differently: allow one uint8 level.)
    for spec, image in zip(specs, mixed, strict=True):
        alone = engine.generate(batch("sdxl", spec))[0]
        assert np.abs(alone.pixels.astype(int) - image.pixels.astype(int)).max() <= 1


def test_progress_reports_every_step(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate(
        batch("flux", ImageSpec("a fox", 1), steps=3), progress=lambda s, t: seen.append((s, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_between_steps_and_engine_stays_usable(engine: Engine) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        if step == 1:
            cancel.set()

    with pytest.raises(CancelledError):
        engine.generate(batch("sd3", ImageSpec("a fox", 1), steps=5), progress, cancel)
    assert seen == [1]
    assert len(engine.generate(batch("sd3", ImageSpec("a fox", 1)))) == 1


def _poison(engine: Engine, family: str, component: str, value: float) -> Any:
    """Make a real component emit `value` everywhere, as a broken model would."""
    module = getattr(engine.pipeline(f"easel/tiny-{family}"), component)
    module = module.decoder if component == "vae" else module.proj_out

    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        return torch.full_like(output, value)

    return module.register_forward_hook(hook)


@pytest.mark.parametrize(
    ("component", "value", "words"),
    [
        ("vae", float("nan"), "NaN"),
        ("transformer", float("inf"), "infinite"),
        ("transformer", float("nan"), "NaN"),
        ("vae", -1.0, "black"),
    ],
)
def test_nan_inf_and_black_outputs_are_errors(
    engine: Engine, component: str, value: float, words: str
) -> None:
    handle = _poison(engine, "flux", component, value)
    try:
        with pytest.raises(InferenceError, match=words):
            engine.generate(batch("flux", ImageSpec("a fox", 1), ImageSpec("a cat", 2)))
    finally:
        handle.remove()
    assert len(engine.generate(batch("flux", ImageSpec("a fox", 1)))) == 1


def test_least_recently_used_pipeline_is_unloaded(model_cache: Path) -> None:
    small = Engine(model_cache, device="cpu", max_loaded=2)
    for family in ("flux", "sd3"):
        small.generate(batch(family, ImageSpec("a fox", 1)))
    small.generate(batch("flux", ImageSpec("a fox", 1)))  # flux is now the most recent
    small.generate(batch("sana", ImageSpec("a fox", 1)))
    assert small.loaded() == ["easel/tiny-flux", "easel/tiny-sana"]


def test_all_builtin_names_are_known() -> None:
    from easel.catalog import FAMILIES as CATALOG_FAMILIES
    from easel.catalog import UPSCALER_FAMILIES

    assert set(TINY_MODELS) == {f"easel/tiny-{f}" for f in FAMILIES}
    # The catalog accepts what the engine runs: diffusers families, and upscalers.
    assert set(CATALOG_FAMILIES) == set(FAMILIES) | set(UPSCALER_FAMILIES)


@pytest.mark.parametrize("family", ["zimage", "qwenimage"])
def test_two_pass_draws_at_the_base_size_then_refines_the_upscaled_draft(
    engine: Engine, family: str
) -> None:
    """The 2K path at a small scale: a 64x64 draft, upscaled to 128x128 and refined at low
    strength, keeps the draft's composition (closer to its own draft than to another seed's),
    and progress counts the steps of both passes up to the end."""
    from PIL import Image

    steps: list[tuple[int, int]] = []
    two_pass = EngineBatch(f"easel/tiny-{family}", family, 128, 128, 4, 3.0,
                           (ImageSpec("a red kite", 5),), two_pass=TwoPass(64, 64, 0.35))
    refined = engine.generate(two_pass, progress=lambda i, n: steps.append((i, n)))[0].pixels
    assert refined.shape == (128, 128, 3)
    assert steps[-1][0] == steps[-1][1] > 4  # the base pass's 4 steps and the refiner's
    assert [i for i, _ in steps] == list(range(1, len(steps) + 1))

    def draft(seed: int) -> np.ndarray:
        pixels = engine.generate(batch(family, ImageSpec("a red kite", seed), steps=4))[0].pixels
        return np.asarray(Image.fromarray(pixels).resize((128, 128), Image.Resampling.LANCZOS))

    own, other = draft(5), draft(6)
    distance = lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())  # noqa: E731
    assert distance(refined, own) < distance(refined, other)


def test_the_refiner_keeps_a_bf16_pipeline_in_bf16(model_cache: Path) -> None:
    """The refiner shares the pipeline's components; diffusers' from_pipe would cast them all
    to float32 unless told otherwise (on a GPU: twice the memory, and slower)."""
    from diffusers import DiffusionPipeline

    engine = Engine(model_cache, device="cpu")
    folder = ensure_tiny("easel/tiny-zimage", model_cache / "tiny")
    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.bfloat16)
    engine.adopt("easel/tiny-zimage", pipe)
    engine.generate(EngineBatch("easel/tiny-zimage", "zimage", 128, 128, 2, 0.0,
                                (ImageSpec("a red kite", 5),), two_pass=TwoPass(64, 64, 0.35)))
    assert {p.dtype for part in (pipe.transformer, pipe.text_encoder, pipe.vae)
            for p in part.parameters()} == {torch.bfloat16}


def test_a_family_without_an_img2img_pipeline_says_so_for_two_pass(engine: Engine) -> None:
    with pytest.raises(InferenceError, match="no img2img pipeline"):
        engine.generate(EngineBatch("easel/tiny-flux2", "flux2", 128, 128, 2, 1.0,
                                    (ImageSpec("a fox", 1),), two_pass=TwoPass(64, 64, 0.35)))


def test_cancel_during_the_refine_pass_stops_the_job(engine: Engine) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > 2:  # the base pass (2 steps) is over: the refiner is running
            cancel.set()

    with pytest.raises(CancelledError):
        engine.generate(EngineBatch("easel/tiny-zimage", "zimage", 128, 128, 2, 0.0,
                                    (ImageSpec("a fox", 1),), two_pass=TwoPass(64, 64, 0.9)),
                        progress=progress, cancel=cancel)


def test_a_local_directory_loads_through_from_pretrained_flux_dev_style(
    engine: Engine, model_cache: Path, tmp_path: Path
) -> None:
    """A user's own directory (here a FLUX.1-dev-style model: guidance embedding on)."""
    from diffusers import DiffusionPipeline, FluxTransformer2DModel

    base = DiffusionPipeline.from_pretrained(ensure_tiny("easel/tiny-flux", model_cache / "tiny"))
    torch.manual_seed(0)
    base.transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6), guidance_embeds=True,
    )
    base.save_pretrained(tmp_path / "my-flux-dev")
    source = str(tmp_path / "my-flux-dev")
    spec = ImageSpec("a red fox", 3)
    low = engine.generate(EngineBatch(source, "flux", 64, 64, 2, 1.0, (spec,)))
    high = engine.generate(EngineBatch(source, "flux", 64, 64, 2, 7.0, (spec,)))
    assert engine.pipeline(source).transformer.config.guidance_embeds
    assert low[0].pixels.shape == (64, 64, 3)
    assert not np.array_equal(low[0].pixels, high[0].pixels)  # guidance reaches the model


def _catalog_schedulers() -> list[tuple[str, str]]:
    from easel.catalog import Catalog

    backends = Catalog.load().backends.values()
    return sorted({(b.family, s.name) for b in backends for s in b.schedulers})


@pytest.mark.parametrize(("family", "name"), _catalog_schedulers())
def test_every_scheduler_the_catalog_offers_runs_on_its_family(
    engine: Engine, family: str, name: str
) -> None:
    """Each (family, scheduler) the catalog lets a client name really samples with that class,
    changes the pixels, and leaves the pipeline's own scheduler in place afterwards."""
    from easel.catalog import Catalog

    spec = Catalog.load().schedulers[name]
    pipe = engine.pipeline(f"easel/tiny-{family}")
    own = type(pipe.scheduler).__name__
    used: list[str] = []
    original_call = type(pipe).__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        used.append(type(self.scheduler).__name__)
        return original_call(self, *args, **kwargs)

    default = engine.generate(batch(family, ImageSpec("a red kite", 5), steps=3))
    try:
        type(pipe).__call__ = spy  # type: ignore[method-assign]
        chosen = engine.generate(EngineBatch(f"easel/tiny-{family}", family, 64, 64, 3, 3.0,
                                             (ImageSpec("a red kite", 5),), scheduler=spec))
    finally:
        type(pipe).__call__ = original_call  # type: ignore[method-assign]
    assert used == [spec.class_name]
    assert type(pipe.scheduler).__name__ == own
    assert np.isfinite(chosen[0].pixels).all()
    if spec.class_name != own or spec.options:
        assert not np.array_equal(default[0].pixels, chosen[0].pixels)


@pytest.mark.parametrize("family", ["flux", "zimage"])
def test_true_cfg_runs_the_negative_branch_of_a_distilled_family(
    engine: Engine, family: str
) -> None:
    """A negative prompt on a guidance-distilled family runs true CFG: two transformer passes a
    step (twice the cost the catalog states), and the negative prompt changes the image."""
    spec = ImageSpec("a fox", 3, negative_prompt="blurry, low quality")
    calls: list[int] = []  # rows of latents the transformer saw, per call
    transformer = engine.pipeline(f"easel/tiny-{family}").transformer

    def rows(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        latents = args[0] if args else next(iter(kwargs.values()))
        calls.append(len(latents) if isinstance(latents, list) else latents.shape[0])

    hook = transformer.register_forward_hook(rows, with_kwargs=True)
    try:
        plain = engine.generate(EngineBatch(f"easel/tiny-{family}", family, 64, 64, 2, 0.0,
                                            (spec,)))
        plain_calls = sum(calls)
        calls.clear()
        guided = engine.generate(EngineBatch(f"easel/tiny-{family}", family, 64, 64, 2, 0.0,
                                             (spec,), true_cfg=2.0))
    finally:
        hook.remove()
    assert sum(calls) == 2 * plain_calls  # both branches, every step
    assert not np.array_equal(plain[0].pixels, guided[0].pixels)
    other = engine.generate(EngineBatch(f"easel/tiny-{family}", family, 64, 64, 2, 0.0,
                                        (ImageSpec("a fox", 3, negative_prompt="vivid"),),
                                        true_cfg=2.0))
    assert not np.array_equal(guided[0].pixels, other[0].pixels)  # the negative matters
