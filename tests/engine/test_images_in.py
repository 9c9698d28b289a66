"""Images drawn from input images (image-to-image, inpainting) on the real diffusers pipelines of
the tier families' stand-ins (tiny random weights), against those pipelines called directly."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.loras import make_lora

from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import AdapterSpec, EngineBatch, ImageSpec, Operation, TwoPass
from easel.engine import Engine
from easel.engine.adapters import peft_name
from easel.engine.families import stand_in_dir
from easel.engine.optimize import psnr

IMAGE, INPAINT = Operation.IMAGE, Operation.INPAINT
# What each tier family draws from an input: FLUX.2 [klein] has no img2img pipeline.
SUPPORTED = [("zimage", IMAGE), ("zimage", INPAINT), ("qwenimage", IMAGE),
             ("qwenimage", INPAINT), ("flux2", INPAINT)]
INPAINTING = [family for family, operation in SUPPORTED if operation is INPAINT]
SIZE = 64


def _gradient() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([x * 4, y * 4, np.full_like(x, 128)], axis=-1).astype(np.uint8)


PICTURE = _gradient()
OTHER_PICTURE = PICTURE[::-1, ::-1].copy()  # the same colours, turned half a circle
MASK = np.zeros((SIZE, SIZE), np.uint8)
MASK[16:48, 16:40] = 255  # repaint a block off the latent cells' grid on one side
REPAINTED = MASK >= 128
INPUTS = {"picture": PICTURE, "other": OTHER_PICTURE, "mask": MASK}


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=4)


def spec(seed: int = 1, init: str | None = "picture", mask: str | None = "mask",
         prompt: str = "a lighthouse at dusk") -> ImageSpec:
    return ImageSpec(prompt, seed, init=init, mask=mask)


def batch(family: str, operation: Operation, strength: float, *specs: ImageSpec,
          steps: int = 4, **options: Any) -> EngineBatch:
    if operation is IMAGE:  # no mask: image-to-image reads none
        specs = tuple(ImageSpec(s.prompt, s.seed, init=s.init) for s in specs)
    return EngineBatch(f"easel/tiny-{family}", family, SIZE, SIZE, steps, 3.0,
                       specs or (spec(),), operation=operation, strength=strength,
                       inputs=INPUTS, **options)


def draw(engine: Engine, family: str, operation: Operation, strength: float,
         **options: Any) -> np.ndarray:
    return engine.generate(batch(family, operation, strength, **options))[0].pixels


def direct_arguments(family: str) -> dict[str, Any]:
    """Each family's call arguments in its own conventions, written out as a caller of diffusers
    would (guidance 3.0, no negative prompt). New lists each call: Z-Image's pipelines write
    their chat template into the prompt lists they are given."""
    return {"zimage": {"guidance_scale": 3.0, "negative_prompt": [""]},
            "qwenimage": {"true_cfg_scale": 3.0, "negative_prompt": [" "]},
            "flux2": {"guidance_scale": 3.0}}[family]

DIRECT_CLASSES = {("zimage", IMAGE): "ZImageImg2ImgPipeline",
                  ("zimage", INPAINT): "ZImageInpaintPipeline",
                  ("qwenimage", IMAGE): "QwenImageImg2ImgPipeline",
                  ("qwenimage", INPAINT): "QwenImageInpaintPipeline",
                  ("flux2", INPAINT): "Flux2KleinInpaintPipeline"}


def direct(model_cache: Path, family: str, operation: Operation, strength: float) -> np.ndarray:
    """What diffusers itself draws: a fresh pipeline of the class from the same saved
    directory, the same inputs, strength and seed."""
    import diffusers
    from PIL import Image

    directory = stand_in_dir(f"easel/tiny-{family}", model_cache / "tiny")
    pipe = getattr(diffusers, DIRECT_CLASSES[family, operation]).from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    masks = {"mask_image": [Image.fromarray(MASK)]} if operation is INPAINT else {}
    images = pipe(prompt=["a lighthouse at dusk"], image=[Image.fromarray(PICTURE)], **masks,
                  strength=strength, num_inference_steps=4, width=SIZE, height=SIZE,
                  generator=[torch.Generator().manual_seed(1)], output_type="np",
                  **direct_arguments(family)).images
    return (np.clip(images[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)


@pytest.mark.parametrize(("family", "operation"), SUPPORTED)
def test_draws_what_diffusers_draws_called_directly(
    engine: Engine, model_cache: Path, family: str, operation: Operation
) -> None:
    drawn = draw(engine, family, operation, 0.6)
    expected = direct(model_cache, family, operation, 0.6)
    if operation is IMAGE:
        assert np.array_equal(drawn, expected)
    else:  # the model's pixels inside the mask; the input's own outside it
        assert np.array_equal(drawn[REPAINTED], expected[REPAINTED])
        assert np.array_equal(drawn[~REPAINTED], PICTURE[~REPAINTED])
        assert not np.array_equal(expected[~REPAINTED], PICTURE[~REPAINTED])  # the VAE's shift


# PSNR (dB) against the pipeline's own near-reconstruction of the input (strength 0.01: one
# step at almost no noise). Against the input itself it stays near 13 dB at any strength: the
# stand-ins' random VAEs do not reproduce an image. Measured (0.1 / 0.9): zimage image
# 14.9 / 12.6 (inpaint, inside the mask, 17.5 / 12.2), qwenimage inf / 26.8 (both: at 0.1
# and 0.01 it runs one step of its last, nearly noise-free sigma), flux2 inpaint 14.7 / 12.5;
# the thresholds leave each about 1 dB.
CLOSE_THEN_FAR = {("zimage", IMAGE): (14.0, 13.5), ("zimage", INPAINT): (16.5, 13.2),
                  ("qwenimage", IMAGE): (40.0, 27.8), ("qwenimage", INPAINT): (40.0, 27.8),
                  ("flux2", INPAINT): (13.8, 13.5)}


@pytest.mark.parametrize(("family", "operation"), SUPPORTED)
def test_low_strength_stays_close_to_the_input_and_high_strength_goes_far(
    engine: Engine, family: str, operation: Operation
) -> None:
    region = REPAINTED if operation is INPAINT else np.ones_like(REPAINTED)
    reconstruction = draw(engine, family, operation, 0.01)[region]
    close = psnr(draw(engine, family, operation, 0.1)[region], reconstruction)
    far = psnr(draw(engine, family, operation, 0.9)[region], reconstruction)
    at_least, at_most = CLOSE_THEN_FAR[family, operation]
    assert close >= at_least
    assert far <= at_most


@pytest.mark.parametrize("family", INPAINTING)
def test_inpainting_keeps_the_input_outside_the_mask_and_repaints_inside(
    engine: Engine, family: str
) -> None:
    drawn = draw(engine, family, INPAINT, 0.9)
    assert np.array_equal(drawn[~REPAINTED], PICTURE[~REPAINTED])
    inside = np.abs(drawn[REPAINTED].astype(int) - PICTURE[REPAINTED].astype(int))
    assert inside.mean() > 20


@pytest.mark.parametrize(("family", "operation"), [("zimage", IMAGE), ("flux2", INPAINT)])
def test_a_batch_of_two_inputs_runs_in_one_call_and_each_follows_its_own(
    engine: Engine, family: str, operation: Operation
) -> None:
    pair = batch(family, operation, 0.5, spec(init="picture"), spec(init="other"))
    seen: list[tuple[int, int]] = []
    both = engine.generate(pair, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]  # one call: each step reported once, not once per image
    alone = [engine.generate(batch(family, operation, 0.5, s))[0] for s in pair.images]
    for together, single in zip(both, alone, strict=True):
        # Batched matmuls may round differently: allow one uint8 level.
        assert np.abs(together.pixels.astype(int) - single.pixels.astype(int)).max() <= 1
    assert not np.array_equal(both[0].pixels, both[1].pixels)
    if operation is INPAINT:
        assert np.array_equal(both[1].pixels[~REPAINTED], OTHER_PICTURE[~REPAINTED])


@pytest.mark.parametrize(("strength", "steps", "runs"), [(0.5, 8, 4), (0.6, 4, 3), (0.1, 4, 1)])
def test_progress_counts_the_steps_the_pipeline_runs(
    engine: Engine, strength: float, steps: int, runs: int
) -> None:
    """An img2img pipeline runs about steps * strength of its schedule (rounded up here: 4 at
    0.6 runs 3); too few for one step, the schedule is lengthened until one runs (at strength
    0.1, one step of ten)."""
    seen: list[tuple[int, int]] = []
    engine.generate(batch("qwenimage", IMAGE, strength, steps=steps),
                    progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, runs) for i in range(1, runs + 1)]


@pytest.mark.parametrize(("family", "operation"), [("zimage", IMAGE), ("flux2", INPAINT)])
def test_cancel_stops_between_steps(engine: Engine, family: str, operation: Operation) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        cancel.set()

    with pytest.raises(CancelledError):
        engine.generate(batch(family, operation, 0.9, steps=6), progress, cancel)
    assert seen == [1]
    assert len(engine.generate(batch(family, operation, 0.9))) == 1


def test_the_views_share_the_loaded_components_and_go_with_their_pipeline(
    model_cache: Path,
) -> None:
    engine = Engine(model_cache, device="cpu", max_loaded=1)
    draw(engine, "zimage", INPAINT, 0.5)
    draw(engine, "zimage", IMAGE, 0.5)
    pipe = engine.pipeline("easel/tiny-zimage")
    for view in (engine._inpainters["easel/tiny-zimage"], engine._refiners["easel/tiny-zimage"]):
        assert view.transformer is pipe.transformer and view.vae is pipe.vae
    draw(engine, "qwenimage", INPAINT, 0.5)  # zimage is unloaded, and its views with it
    assert list(engine._inpainters) == ["easel/tiny-qwenimage"]
    assert list(engine._refiners) == []


def test_inpainting_runs_with_the_batchs_lora_adapters(
    engine: Engine, tmp_path: Path
) -> None:
    path = make_lora("flux2", tmp_path / "flux2-1.safetensors", 1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    lora = AdapterSpec("flux2-1", str(path), digest, 1.0)
    base = draw(engine, "flux2", INPAINT, 0.9)
    adapted = draw(engine, "flux2", INPAINT, 0.9, adapters=(lora,))
    assert engine._inpainters["easel/tiny-flux2"].get_active_adapters() == [peft_name(lora)]
    assert not np.array_equal(adapted[REPAINTED], base[REPAINTED])
    assert np.array_equal(adapted[~REPAINTED], PICTURE[~REPAINTED])
    assert np.array_equal(draw(engine, "flux2", INPAINT, 0.9), base)  # and back to the base


@pytest.mark.parametrize("family", ["flux", "sd3", "sdxl"])
@pytest.mark.parametrize("operation", [IMAGE, INPAINT])
def test_the_other_families_with_img2img_and_inpaint_pipelines_draw_from_inputs_too(
    engine: Engine, family: str, operation: Operation
) -> None:
    """Through the same family table; SDXL's img2img takes no size (it draws at the input's),
    and rounds steps * strength down, so strength 0.1 runs one step only by the longer
    schedule."""
    pair = batch(family, operation, 0.1, spec(), spec(seed=2, init="other"))
    images = engine.generate(pair)
    assert [im.pixels.shape for im in images] == [(SIZE, SIZE, 3)] * 2
    if operation is INPAINT:
        assert np.array_equal(images[1].pixels[~REPAINTED], OTHER_PICTURE[~REPAINTED])


@pytest.mark.parametrize(
    ("family", "operation", "words"),
    [("flux2", IMAGE, "flux2 family cannot do image"),
     ("sana", INPAINT, "sana family cannot do inpaint"),
     ("sana", IMAGE, "sana family cannot do image")],
)
def test_an_operation_the_family_cannot_do_is_refused_by_name(
    model_cache: Path, family: str, operation: Operation, words: str
) -> None:
    engine = Engine(model_cache, device="cpu")
    with pytest.raises(InferenceError, match=words):
        engine.generate(batch(family, operation, 0.5))
    assert f"easel/tiny-{family}" not in engine.loaded()  # refused before loading


@pytest.mark.parametrize(
    ("specs", "inputs", "words"),
    [((spec(init=None),), INPUTS, "image 0 has no init input for inpaint"),
     ((spec(), spec(seed=2, mask=None)), INPUTS, "image 1 has no mask input for inpaint"),
     ((spec(init="missing"),), INPUTS, "init input 'missing' is not among the inputs"),
     ((spec(),), {**INPUTS, "picture": PICTURE[:32]}, r"init input 'picture' is uint8 \(32, "),
     ((spec(),), {**INPUTS, "mask": PICTURE}, r"mask input 'mask' is uint8 \(64, 64, 3\)")],
)
def test_missing_or_misshapen_inputs_are_refused_by_name(
    engine: Engine, specs: tuple[ImageSpec, ...], inputs: dict[str, Any], words: str
) -> None:
    bad = EngineBatch("easel/tiny-zimage", "zimage", SIZE, SIZE, 2, 3.0, specs,
                      operation=INPAINT, strength=0.5, inputs=inputs)
    with pytest.raises(InferenceError, match=words):
        engine.generate(bad)


def test_two_passes_from_an_input_are_refused(engine: Engine) -> None:
    big = EngineBatch("easel/tiny-zimage", "zimage", 128, 128, 2, 3.0, (spec(),),
                      two_pass=TwoPass(64, 64, 0.35), operation=IMAGE, strength=0.5,
                      inputs={"picture": np.zeros((128, 128, 3), np.uint8)})
    with pytest.raises(InferenceError, match="would need two passes"):
        engine.generate(big)


# -- easel-mini: its own pipeline draws from inputs in its 32x32 pixel space ---------------------


def mini(operation: Operation, strength: float) -> np.ndarray:
    init = spec() if operation is INPAINT else spec(mask=None)
    drawn = EngineBatch("easel/mini", "mini", SIZE, SIZE, 8, 3.0, (init,), operation=operation,
                        strength=strength, inputs=INPUTS)
    return Engine(Path("unused"), device="cpu").generate(drawn)[0].pixels


def test_easel_mini_redraws_an_input_closer_the_lower_the_strength() -> None:
    """Its images are drawn at 32x32 and resized: "the input" is the picture through that
    round trip, which strength 0.1 (one step of eight, at the last noise level) stays near."""
    import torch.nn.functional as F

    small = torch.from_numpy(PICTURE).permute(2, 0, 1)[None].float() / 255
    small = F.interpolate(F.interpolate(small, size=(32, 32), mode="bilinear", antialias=True),
                          size=(SIZE, SIZE), mode="bicubic")
    round_trip = (small.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    close, far = (psnr(mini(IMAGE, s), round_trip) for s in (0.1, 0.9))
    assert close >= 16 and far <= close - 5, (close, far)  # measured: 17.5 and 11.6 dB


def test_easel_mini_inpaints_the_mask_and_keeps_every_other_pixel() -> None:
    drawn = mini(INPAINT, 1.0)
    assert np.array_equal(drawn[~REPAINTED], PICTURE[~REPAINTED])
    inside = np.abs(drawn[REPAINTED].astype(int) - PICTURE[REPAINTED].astype(int))
    assert inside.mean() > 10


# -- editing by instruction: FLUX.2 [klein] shown reference images -------------------------------


def referenced(engine: Engine, *keys: str, prompt: str = "the same scene at night") -> np.ndarray:
    specs = (ImageSpec(prompt, 1, references=keys),)
    drawn = EngineBatch("easel/tiny-flux2", "flux2", SIZE, SIZE, 4, 3.0, specs,
                        operation=Operation.REFERENCE, inputs=INPUTS)
    return engine.generate(drawn)[0].pixels


def test_reference_editing_draws_what_flux2_klein_draws_shown_the_images(
    engine: Engine, model_cache: Path
) -> None:
    import diffusers
    from PIL import Image

    drawn = referenced(engine, "picture", "other")
    directory = stand_in_dir("easel/tiny-flux2", model_cache / "tiny")
    pipe = diffusers.Flux2KleinPipeline.from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt=["the same scene at night"], image=[Image.fromarray(PICTURE),
                                                               Image.fromarray(OTHER_PICTURE)],
                    num_inference_steps=4, width=SIZE, height=SIZE, guidance_scale=3.0,
                    generator=[torch.Generator().manual_seed(1)], output_type="np").images[0]
    assert np.array_equal(drawn, (np.clip(expected, 0, 1) * 255).round().astype(np.uint8))
    assert not np.array_equal(drawn, referenced(engine, "other"))  # the images it is shown count


def test_reference_editing_is_refused_where_the_pipeline_takes_no_images(engine: Engine) -> None:
    specs = (ImageSpec("x", 1, references=("picture",)),)
    with pytest.raises(InferenceError, match="zimage family cannot do reference"):
        engine.generate(EngineBatch("easel/tiny-zimage", "zimage", SIZE, SIZE, 2, 3.0, specs,
                                    operation=Operation.REFERENCE, inputs=INPUTS))
    mixed = (ImageSpec("x", 1, references=("picture",)), ImageSpec("x", 2, references=("other",)))
    with pytest.raises(InferenceError, match="the same, non-empty reference images"):
        engine.generate(EngineBatch("easel/tiny-flux2", "flux2", SIZE, SIZE, 2, 3.0, mixed,
                                    operation=Operation.REFERENCE, inputs=INPUTS))
