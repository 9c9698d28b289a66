"""PNG encoding: a photograph is written with zlib's run-length strategy (as small, in about
half the time), flat art and repeated patterns with the filtered strategy, Pillow's own, which
searches for matches (run-length would make them several times larger); the pixels and the
metadata always come back exactly."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from easel.domain.request import ImageFormat
from easel.services.images.encoding import encode, png_strategy, read_metadata
from tests.safety.pictures import pixels


def tiled() -> np.ndarray:
    """A 32x32 patch of noise repeated: only matches beyond distance 1 compress it."""
    patch = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return np.tile(patch, (24, 24, 1))


def poster() -> np.ndarray:
    image = Image.new("RGB", (768, 768), (240, 240, 250))
    draw = ImageDraw.Draw(image)
    for i in range(30):
        draw.rectangle([i * 20, i * 13, i * 20 + 300, i * 13 + 200],
                       fill=((i * 37) % 255, (i * 91) % 255, (i * 53) % 255))
    for i in range(45):
        draw.text((10, i * 16), "easel renders text like a poster " * 3, fill=(0, 0, 0))
    return np.asarray(image)


def pillow_png(picture: np.ndarray, strategy: int, level: int = 4) -> bytes:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG", compress_level=level,
                                  compress_type=strategy)
    return out.getvalue()


def test_pillow_hands_the_strategy_to_zlib() -> None:
    """The setting easel relies on: without it every PNG would silently be written alike
    (Pillow's own choice is the filtered strategy: the same bytes as passing it)."""
    picture = tiled()
    default, rle = (len(pillow_png(picture, s)) for s in (zlib.Z_FILTERED, zlib.Z_RLE))
    assert rle > 10 * default
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG", compress_level=4)
    assert out.getvalue() == pillow_png(picture, zlib.Z_FILTERED)


@pytest.mark.parametrize(("name", "picture", "strategy"), [
    ("photograph", pixels("coffee", 1024, 1024), zlib.Z_RLE),
    ("another photograph", pixels("astronaut", 768, 1152), zlib.Z_RLE),
    ("flat art and text", poster(), zlib.Z_FILTERED),
    ("a repeated pattern", tiled(), zlib.Z_FILTERED),
])
def test_each_picture_gets_the_strategy_that_suits_it(name: str, picture: np.ndarray,
                                                      strategy: int) -> None:
    assert png_strategy(picture, 4) == strategy, name
    data = encode(picture, ImageFormat.PNG, 95, {"seed": 7})
    decoded = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(decoded.convert("RGB")), picture)
    assert read_metadata(data) == {"seed": 7}
    # Never more than a few percent above what Pillow writes by itself at the same level.
    assert len(data) <= 1.03 * len(pillow_png(picture, zlib.Z_FILTERED)) + 1024


def test_small_pictures_and_level_zero() -> None:
    small = pixels("rocket", 64, 64)
    assert png_strategy(small, 4) == zlib.Z_FILTERED  # not worth sampling
    assert png_strategy(small, 0) == zlib.Z_FILTERED
    for level in (0, 9):
        data = encode(small, ImageFormat.PNG, 95, {}, png_level=level)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), small)
