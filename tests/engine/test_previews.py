"""Partial images on the real diffusers pipelines (tiny random weights, and easel-mini's trained
ones): the model's current prediction of the clean image, decoded at the batch's preview steps,
without changing the final image."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from easel.catalog import Catalog
from easel.domain.errors import CancelledError
from easel.domain.generation import EngineBatch, GeneratedImage, ImageSpec, TwoPass
from easel.engine import Engine
from easel.engine.families import call_kwargs, family_of

FAMILIES = ["flux", "flux2", "zimage", "qwenimage", "sd3", "sdxl", "sana", "mini"]
FOX, CAT = ImageSpec("a red fox in snow", 1), ImageSpec("a blue house", 2, "green")


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=len(FAMILIES) + 1)


class Previews:
    """What a preview callback received, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[GeneratedImage]]] = []

    def __call__(self, index: int, images: list[GeneratedImage]) -> None:
        self.calls.append((index, images))

    @property
    def indices(self) -> list[int]:
        return [index for index, _ in self.calls]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def tiny(family: str, *specs: ImageSpec, steps: int = 3, previews: int = 2,
         **options: Any) -> EngineBatch:
    return EngineBatch(f"easel/tiny-{family}", family, 64, 32, steps, 3.0, specs,
                       previews=previews, **options)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_sends_a_preview_per_preview_step_without_changing_the_image(
    engine: Engine, family: str
) -> None:
    batch = tiny(family, FOX, CAT, FOX)  # a repeated spec is drawn once and mapped back
    assert batch.preview_steps == (1, 2)
    seen = Previews()
    final = engine.generate(batch, preview=seen)

    assert seen.indices == [0, 1]
    for _, images in seen.calls:
        assert [im.seed for im in images] == [1, 2, 1]
        assert [im.pixels.shape for im in images] == [(32, 64, 3)] * 3
        assert all(im.pixels.dtype == np.uint8 for im in images)
        assert all((im.width, im.height) == (64, 32) for im in images)
        assert np.array_equal(images[0].pixels, images[2].pixels)
        assert not np.array_equal(images[0].pixels, images[1].pixels)
    first, second = (images[0].pixels for _, images in seen.calls)
    assert not np.array_equal(first, second)
    assert not np.array_equal(second, final[0].pixels)
    # Same seeds with and without previews: the same final pixels, to the bit.
    plain = engine.generate(batch)
    for with_previews, without in zip(final, plain, strict=True):
        assert np.array_equal(with_previews.pixels, without.pixels)
    assert "step" not in vars(engine.pipeline(batch.source).scheduler)  # the tap is off again


def _catalog_schedulers() -> list[tuple[str, str]]:
    backends = Catalog.load().backends.values()
    return sorted({(b.family, s.name) for b in backends for s in b.schedulers})


@pytest.mark.parametrize(("family", "name"), _catalog_schedulers())
def test_every_catalog_scheduler_gives_its_clean_image_prediction_and_the_same_image(
    engine: Engine, family: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each sampler a client may name exposes x0 (none falls back to its noisy latents), and
    tapping it changes nothing: ancestral samplers still get their generator (the pipelines
    read `step`'s signature to decide), so the final pixels are bit-identical."""
    batch = tiny(family, FOX, steps=4, previews=3, scheduler=Catalog.load().schedulers[name])
    seen = Previews()
    with caplog.at_level(logging.DEBUG, logger="easel.engine"):
        final = engine.generate(batch, preview=seen)
    assert seen.indices == [0, 1, 2]
    assert "previewing its latents" not in caplog.text
    assert np.array_equal(final[0].pixels, engine.generate(batch)[0].pixels)


def _noisy_decodes(engine: Engine, batch: EngineBatch) -> dict[int, np.ndarray]:
    """The same call run directly, decoding its *noisy* latents at the preview steps with the
    family's decoder: what a preview would be without the clean-image prediction."""
    pipe = engine.pipeline(batch.source)
    decoded: dict[int, np.ndarray] = {}

    def keep(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if step + 1 in batch.preview_steps:
            pixels = family_of(batch.family).decode_preview(pipe, tensors["latents"],
                                                            batch.width, batch.height)
            decoded[step + 1] = (pixels[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        return tensors

    generators = [torch.Generator().manual_seed(spec.seed) for spec in batch.images]
    with torch.inference_mode():
        pipe(**call_kwargs(batch, generators), callback_on_step_end=keep)
    return decoded


@pytest.mark.parametrize("model", ["easel/mini", "flux", "flux2", "zimage", "sd3"])
def test_a_preview_is_the_clean_image_prediction_closer_to_the_result_than_the_latents(
    engine: Engine, model: str
) -> None:
    """easel-mini has trained weights (its real 20 steps); the flow-matching stand-ins show the
    same on random weights. At every preview step the x0 preview is nearer the final image than
    the decoded noisy latents of that step."""
    if model == "easel/mini":
        batch = EngineBatch(model, "mini", 64, 64, 20, 4.0, (FOX,), previews=3)
    else:
        batch = tiny(model, FOX, steps=4, previews=3)
    seen = Previews()
    final = engine.generate(batch, preview=seen)[0].pixels
    noisy = _noisy_decodes(engine, batch)
    assert sorted(noisy) == list(batch.preview_steps)
    for (_, images), step in zip(seen.calls, batch.preview_steps, strict=True):
        assert distance(images[0].pixels, final) < distance(noisy[step], final), step


def test_cancel_stops_a_job_with_previews_and_the_scheduler_is_restored(engine: Engine) -> None:
    cancel = threading.Event()
    seen = Previews()

    def preview(index: int, images: list[GeneratedImage]) -> None:
        seen(index, images)
        cancel.set()

    batch = tiny("sd3", FOX, steps=6, previews=3)
    with pytest.raises(CancelledError):
        engine.generate(batch, cancel=cancel, preview=preview)
    assert seen.indices == [0]
    assert "step" not in vars(engine.pipeline(batch.source).scheduler)
    assert len(engine.generate(batch)) == 1


def test_two_pass_previews_span_both_passes_at_the_batch_size(engine: Engine) -> None:
    """Base-pass previews are drawn at the base size and stretched to the batch's; the refine
    pass's are at the batch's size already."""
    batch = EngineBatch("easel/tiny-zimage", "zimage", 128, 128, 4, 3.0, (FOX,),
                        two_pass=TwoPass(64, 64, 0.35), previews=3)
    assert batch.preview_steps == (1, 2, 4)  # two in the base pass of 4 steps, one refining
    seen = Previews()
    done: list[int] = []
    final = engine.generate(batch, progress=lambda step, _: done.append(step), preview=seen)
    assert seen.indices == [0, 1, 2]
    assert [images[0].pixels.shape for _, images in seen.calls] == [(128, 128, 3)] * 3
    assert done[-1] > 4  # the refine pass ran
    assert np.array_equal(final[0].pixels, engine.generate(batch)[0].pixels)


def test_a_preview_that_runs_out_of_memory_is_skipped_and_the_job_finishes(
    engine: Engine,
) -> None:
    batch = tiny("flux", FOX)
    decoder = engine.pipeline(batch.source).vae.decoder
    calls: list[int] = []

    def out_of_memory_once(_module: Any, _inputs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the first decode is the first preview's
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    handle = decoder.register_forward_pre_hook(out_of_memory_once)
    seen = Previews()
    try:
        final = engine.generate(batch, preview=seen)
    finally:
        handle.remove()
    assert len(calls) == 3  # two previews and the final image
    assert seen.indices == [0]  # the second preview, numbered on from the ones sent
    assert np.array_equal(final[0].pixels, engine.generate(batch)[0].pixels)
