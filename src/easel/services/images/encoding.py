"""Encoding generated pixels as JPEG, PNG or WEBP, with easel's provenance in the metadata."""

from __future__ import annotations

import io
import json
import zlib
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from easel.domain.request import ImageFormat

EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131
METADATA_KEY = "easel"


PNG_COMPRESS_LEVEL = 4  # the setting's default (EASEL_PNG_COMPRESS_LEVEL)
# zlib's run-length strategy (matches at distance 1 only) writes a photograph's filtered rows
# as small as the filtered strategy (Pillow's own for PNG, a full match search) does, in about
# half the time; on flat art or repeated patterns its files can be several times larger.
# Three bands of the picture decide which one it gets; a small picture, cheap to write either
# way, is not sampled.
SAMPLE_ROWS = 16
SAMPLED_PIXELS = 256 * 256
RLE_SLACK = 1.03  # RLE is chosen when the sample is at most this much larger with it


def encode(pixels: Any, fmt: ImageFormat, quality: int, metadata: dict[str, Any],
           png_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """`pixels` is an HxWx3 uint8 array. The metadata travels as JSON inside the file;
    `png_level` is a PNG's zlib level (quality is a JPEG's and a WEBP's)."""
    image = Image.fromarray(pixels, mode="RGB")
    text = json.dumps(metadata, sort_keys=True)
    out = io.BytesIO()
    if fmt is ImageFormat.PNG:
        info = PngInfo()
        info.add_text(METADATA_KEY, text)
        # Pillow hands `compress_type` to zlib as the strategy (a test checks it still does).
        image.save(out, format="PNG", pnginfo=info, compress_level=png_level,
                   compress_type=png_strategy(pixels, png_level))
    else:
        exif = Image.Exif()
        exif[EXIF_IMAGE_DESCRIPTION] = text
        exif[EXIF_SOFTWARE] = "easel"
        pil_format = "JPEG" if fmt is ImageFormat.JPEG else "WEBP"
        image.save(out, format=pil_format, quality=quality, exif=exif.tobytes())
    return out.getvalue()


def png_strategy(pixels: Any, level: int) -> int:
    """zlib.Z_RLE when the picture's top, middle and bottom bands compress within RLE_SLACK
    as well with it as with zlib.Z_FILTERED, which they get otherwise (and pictures under
    SAMPLED_PIXELS, and level 0, which stores)."""
    rows = np.asarray(pixels)
    if level == 0 or rows.shape[0] * rows.shape[1] < SAMPLED_PIXELS:
        return zlib.Z_FILTERED
    if len(rows) > 3 * SAMPLE_ROWS:
        middle = (len(rows) - SAMPLE_ROWS) // 2
        rows = np.concatenate([rows[:SAMPLE_ROWS], rows[middle:middle + SAMPLE_ROWS],
                               rows[-SAMPLE_ROWS:]])
    sample = Image.fromarray(np.ascontiguousarray(rows), mode="RGB")
    sizes = {}
    for strategy in (zlib.Z_FILTERED, zlib.Z_RLE):
        out = io.BytesIO()
        sample.save(out, format="PNG", compress_level=level, compress_type=strategy)
        sizes[strategy] = out.tell()
    if sizes[zlib.Z_RLE] <= sizes[zlib.Z_FILTERED] * RLE_SLACK:
        return zlib.Z_RLE
    return zlib.Z_FILTERED


def read_metadata(data: bytes) -> dict[str, Any]:
    """The provenance easel wrote into an image file (empty if none)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "PNG":
        text = image.info.get(METADATA_KEY)
    else:
        text = image.getexif().get(EXIF_IMAGE_DESCRIPTION)
    return json.loads(text) if text else {}
