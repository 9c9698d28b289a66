"""Real pictures for the content checks, made offline: photographs of people that
scikit-image ships (an astronaut, a cameraman), pictures without people (a cup of coffee, a
cat), and a rendered bare torso (flesh-coloured shapes, blurred) that NudeNet reads as exposed
breasts. Their scores are recorded in docs/safety.md."""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

NAMES = ("torso", "astronaut", "camera", "coffee", "chelsea")


def _torso() -> Image.Image:
    image = Image.new("RGB", (1024, 1024), (40, 60, 90))
    draw = ImageDraw.Draw(image)
    skin = (224, 172, 140)
    draw.ellipse((262, 100, 762, 1200), fill=skin)  # the body
    draw.ellipse((412, -50, 612, 160), fill=skin)  # the neck
    for cx in (390, 634):
        draw.ellipse((cx - 130, 380, cx + 130, 640), fill=(214, 160, 128))
        draw.ellipse((cx - 30, 480, cx + 30, 540), fill=(150, 80, 70))
    return image.filter(ImageFilter.GaussianBlur(6))


@cache
def picture(name: str) -> Image.Image:
    if name == "torso":
        return _torso()
    from skimage import data

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return Image.fromarray(pixels).convert("RGB")


def pixels(name: str, width: int, height: int) -> np.ndarray:
    """The picture at width x height, as the engine hands images over (HxWx3 uint8)."""
    return np.asarray(picture(name).resize((width, height), Image.Resampling.LANCZOS))
