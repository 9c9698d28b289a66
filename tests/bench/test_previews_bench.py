"""bench/previews.py: the timing harness on a tiny family, and the full-size FLOP count (meta
device, no weights) that says what a preview costs against a step where no GPU is at hand."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from tests.bench.test_gpu_harness import load

from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine


def test_the_harness_times_a_job_with_and_without_previews(model_cache: Path) -> None:
    bench = load("previews")
    engine = Engine(model_cache, device="cpu")
    batch = EngineBatch("easel/tiny-flux", "flux", 64, 64, 4, 3.0, (ImageSpec("a fox", 7),),
                        previews=3)
    result = bench.measure(engine, batch, repeats=1)
    assert result["plain"] > 0 and result["previews"] > 0
    assert result["step"] > 0 and result["decode"] > 0
    assert result["ratio"] == pytest.approx(result["decode"] / result["step"])
    _, clock = bench.job(engine, batch)
    assert len(clock.step_ends) == 4 and len(clock.preview_costs) == 3


def test_a_preview_decode_is_counted_as_the_vae_decode_of_the_whole_image() -> None:
    """The count follows the pipeline to the latents its sampler holds (packed 2x2 patches for
    FLUX), so the preview decoder unpacks them to the full image: the same FLOPs as decoding
    the (16, 32, 32) latents of a 256x256 image directly."""
    from torch.utils.flop_counter import FlopCounterMode

    bench = load("previews")
    step, decode = bench.count_flops("flux-schnell", 256)
    full = load("full_size")
    vae = full.build_full_size("flux-schnell", "meta").vae
    direct = FlopCounterMode(display=False)
    with torch.no_grad(), direct:
        vae.decode(functools.partial(torch.empty, device="meta")(1, 16, 32, 32))
    assert decode == direct.get_total_flops()
    # FLUX's 12B transformer at 256 image tokens: about 2 FLOPs per parameter and token.
    assert 2 * 11.8e9 * 256 < step < 2 * 11.9e9 * (256 + 512) * 1.2
