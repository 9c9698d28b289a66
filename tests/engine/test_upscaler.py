"""The upscaler on the tiny Swin2SR, built offline, saved and loaded back through transformers'
`from_pretrained` as real weights are: tiles leave no seams, progress counts tiles, a cancel
stops between them, a saved folder is recognised and judged complete, and the engine's
refusals name the problem."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import EngineBatch, ImageSpec, Operation
from easel.engine import Engine
from easel.engine.pipelines import TINY_UPSCALER, resolve_local_path
from easel.engine.upscaler import Upscaler, is_upscaler_folder
from easel.services.weights.files import snapshot_gap


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Engine:
    return Engine(model_cache, device="cpu", max_loaded=1)


def image(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def batch(inputs: dict[str, np.ndarray], factor: int, width: int, height: int) -> EngineBatch:
    specs = tuple(ImageSpec("", i, init=key) for i, key in enumerate(inputs))
    return EngineBatch(source=TINY_UPSCALER, family="swin2sr", width=width * factor,
                       height=height * factor, steps=1, guidance=0.0, images=specs,
                       operation=Operation.UPSCALE, inputs=inputs, upscale_factor=factor)


def test_tiles_leave_no_seams(engine: Engine) -> None:
    """An odd-sized image in 16-pixel tiles with 16 of context equals it in one piece: the
    tiles' windows line up with the whole image's and their borders see real neighbours."""
    upscaler = engine.pipeline(TINY_UPSCALER)
    pixels = image(50, 37)[None]
    whole = Upscaler(upscaler.model, tile=4096).enlarge(pixels)
    tiled = Upscaler(upscaler.model, tile=16, context=16)
    assert len(tiled.tiles(37, 50)) == 12
    # Equal but for float rounding at the last of 8 bits.
    assert np.abs(tiled.enlarge(pixels).astype(int) - whole.astype(int)).max() <= 1
    assert whole.shape == (1, 37 * 4, 50 * 4, 3) and whole.dtype == np.uint8


def test_progress_counts_tiles_and_a_cancel_stops_between_them(engine: Engine) -> None:
    upscaler = engine.pipeline(TINY_UPSCALER)
    small = Upscaler(upscaler.model, tile=16, context=8)
    seen: list[tuple[int, int]] = []
    small.enlarge(image(40, 20)[None], done=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]
    cancel = threading.Event()

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        small.enlarge(image(40, 20)[None], done=stop_after_two, cancel=cancel)


def test_a_batch_of_several_images_is_each_image_alone(engine: Engine) -> None:
    one, two = image(24, 16, 1), image(24, 16, 2)
    together = engine.generate(batch({"a": one, "b": two}, 4, 24, 16))
    alone = engine.generate(batch({"b": two}, 4, 24, 16))
    assert np.array_equal(together[1].pixels, alone[0].pixels)
    assert not np.array_equal(together[0].pixels, together[1].pixels)


def test_factors_other_than_the_models_resample_its_output(engine: Engine) -> None:
    from PIL import Image

    pixels = image(24, 16)
    (x4,) = engine.generate(batch({"a": pixels}, 4, 24, 16))
    (x3,) = engine.generate(batch({"a": pixels}, 3, 24, 16))
    assert x3.pixels.shape == (48, 72, 3)
    expected = np.asarray(Image.fromarray(x4.pixels).resize((72, 48), Image.Resampling.LANCZOS))
    assert np.abs(x3.pixels.astype(int) - expected.astype(int)).max() <= 1


def test_a_black_input_comes_out_black_not_as_a_failure(engine: Engine) -> None:
    black = np.zeros((16, 16, 3), np.uint8)
    (out,) = engine.generate(batch({"a": black}, 2, 16, 16))
    assert out.pixels.shape == (32, 32, 3)


def test_an_upscaler_takes_no_model_slot(model_cache: Path) -> None:
    """With room for one model, an upscale between two drawings unloads neither."""
    one = Engine(model_cache, device="cpu", max_loaded=1)
    drawing = EngineBatch("easel/tiny-mini", "mini", 32, 32, 1, 1.0, (ImageSpec("a fox", 1),))
    one.generate(drawing)
    one.generate(batch({"a": image(16, 16)}, 2, 16, 16))
    one.generate(drawing)
    assert set(one.loaded()) == {"easel/tiny-mini", TINY_UPSCALER}


def test_an_input_of_the_wrong_size_is_refused_before_any_work(engine: Engine) -> None:
    wrong = replace_inputs(batch({"a": image(24, 16)}, 2, 24, 16), {"a": image(20, 16)})
    with pytest.raises(InferenceError, match="init input"):
        engine.generate(wrong)


def test_a_drawing_pipeline_cannot_upscale(engine: Engine) -> None:
    from dataclasses import replace

    drawing = replace(batch({"a": image(16, 16)}, 2, 16, 16), source="easel/tiny-mini",
                      family="mini")
    with pytest.raises(InferenceError, match="not an upscaler"):
        engine.generate(drawing)


def test_a_saved_upscaler_is_recognised_and_judged_complete(model_cache: Path,
                                                            tmp_path: Path) -> None:
    folder = resolve_local_path(TINY_UPSCALER, model_cache)
    assert folder is not None and is_upscaler_folder(folder)
    assert snapshot_gap(folder) is None
    copy = tmp_path / "upscaler"
    copy.mkdir()
    (copy / "config.json").write_bytes((folder / "config.json").read_bytes())
    assert is_upscaler_folder(copy)
    assert snapshot_gap(copy) is not None  # the weights are missing


def replace_inputs(b: EngineBatch, inputs: dict[str, np.ndarray]) -> EngineBatch:
    from dataclasses import replace

    return replace(b, inputs=inputs)
