"""Encoding generated pixels as JPEG, PNG or WEBP, with easel's provenance in the metadata."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from easel.domain.request import ImageFormat

EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131
METADATA_KEY = "easel"


PNG_COMPRESS_LEVEL = 4  # the setting's default (EASEL_PNG_COMPRESS_LEVEL)


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
        image.save(out, format="PNG", pnginfo=info, compress_level=png_level)
    else:
        exif = Image.Exif()
        exif[EXIF_IMAGE_DESCRIPTION] = text
        exif[EXIF_SOFTWARE] = "easel"
        pil_format = "JPEG" if fmt is ImageFormat.JPEG else "WEBP"
        image.save(out, format=pil_format, quality=quality, exif=exif.tobytes())
    return out.getvalue()


def read_metadata(data: bytes) -> dict[str, Any]:
    """The provenance easel wrote into an image file (empty if none)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "PNG":
        text = image.info.get(METADATA_KEY)
    else:
        text = image.getexif().get(EXIF_IMAGE_DESCRIPTION)
    return json.loads(text) if text else {}
