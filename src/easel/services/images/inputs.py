"""Images a client sends in (the images-in work: edits, image-to-image, masks, references),
decoded once and safely, before any job exists.

An input image is hostile until decoded: its format is sniffed from its bytes (never trusted
from a file name, a declared MIME type or a data URI's label), its pixel count is read from its
header and refused before a single pixel is decoded (a 30,000 x 30,000 PNG is a few KB
compressed and gigabytes decoded), a truncated or corrupt file is refused rather than padded,
and what comes out is plain RGB pixels with EXIF orientation applied, plus the alpha channel
when the file has one. Every refusal is an EaselError naming the client's parameter.

How an image is named on the wire (a data URI, bare base64, a URL, an id of an image easel
stored) is read by `reference`; fetching a URL goes through the outbound guard
(services/delivery/outbound.fetch) and looking up a stored id is the job service's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from easel.domain.errors import invalid

# What every provider documents for input images (OpenAI, Runware, Google: PNG, JPEG, WEBP).
FORMATS = ("PNG", "JPEG", "WEBP")
DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)"
                      r";base64,(?P<data>.*)", re.S)
BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


@dataclass(frozen=True)
class InputLimits:
    """What one input image may be. The defaults take any photo a phone makes and the largest
    image the catalog draws (2048 x 2048 two-pass, 4 MP), with room for outpainting sources."""

    max_bytes: int = 25 * 1024 * 1024  # the file, before decoding
    max_pixels: int = 40_000_000  # width x height, read from the header
    max_side: int = 16_384


@dataclass(frozen=True)
class InputImage:
    """A decoded input image: RGB pixels with EXIF orientation applied, the alpha channel when
    the file has one (a mask may be drawn in it), its sniffed format and its file's sha256."""

    pixels: np.ndarray  # H x W x 3, uint8
    alpha: np.ndarray | None  # H x W, uint8 (255: opaque), or None when fully opaque
    format: str  # "png", "jpeg" or "webp"
    digest: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class Reference:
    """How the client named an image: its bytes (from a data URI or bare base64), a URL to
    fetch, or the id of an image easel stored earlier (Runware imageUUIDs, a job's image)."""

    data: bytes | None = None
    url: str | None = None
    stored_id: str | None = None


def reference(value: object, parameter: str, limits: InputLimits = InputLimits()) -> Reference:
    """What a wire string names: `data:<type>;base64,...`, an http(s) URL, a UUID (an image
    easel stored), or bare base64 (either alphabet, padding optional)."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(parameter, f"{parameter} must be an image: a data URI, base64, a URL or "
                                 "the id of a stored image")
    text = value.strip()
    if text.startswith("data:"):
        found = DATA_URI.fullmatch(text)
        if found is None:
            raise invalid(parameter, f"{parameter} is a data URI without base64 data "
                                     "(data:<type>;base64,<data>)")
        return Reference(data=decode_base64(found["data"], parameter, limits.max_bytes))
    if text.lower().startswith(("http://", "https://")):
        return Reference(url=text)
    if _is_uuid(text):
        return Reference(stored_id=text.lower())
    return Reference(data=decode_base64(text, parameter, limits.max_bytes))


def _is_uuid(text: str) -> bool:
    try:
        return len(text) == 36 and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def decode_base64(text: str, parameter: str, max_bytes: int) -> bytes:
    """Base64 in either alphabet (Google's clients send the URL-safe one), whitespace and
    padding optional; its size is checked before it is decoded."""
    compact = re.sub(r"\s+", "", text)
    if len(compact) * 3 // 4 > max_bytes:
        raise invalid(parameter, f"{parameter} is over the limit of {max_bytes:,} bytes")
    if not BASE64_TEXT.fullmatch(compact):
        raise invalid(parameter, f"{parameter} is neither a URL, an image id nor base64 data")
    standard = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(parameter, f"{parameter} is not valid base64") from None


def decode(data: bytes, parameter: str, limits: InputLimits = InputLimits()) -> InputImage:
    """The image in `data`, or an error naming `parameter`: not an image, a format easel does
    not take, too many pixels, animated, truncated or corrupt."""
    if len(data) > limits.max_bytes:
        raise invalid(parameter, f"{parameter} is {len(data):,} bytes, over the limit of "
                                 f"{limits.max_bytes:,}")
    image = _opened(data, parameter, limits)
    _check_size(image.size, parameter, limits)
    if getattr(image, "n_frames", 1) > 1:
        raise invalid(parameter, f"{parameter} is an animated image; send one frame")
    try:
        image.load()
        oriented = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise invalid(parameter, f"{parameter} is a truncated or corrupt "
                                 f"{str(image.format).upper()} file ({exc})") from None
    pixels, alpha = _rgb_and_alpha(oriented)
    return InputImage(pixels, alpha, str(image.format).lower(), hashlib.sha256(data).hexdigest())


def _opened(data: bytes, parameter: str, limits: InputLimits) -> Image.Image:
    """The image with only its header read, its format sniffed among FORMATS."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (then refuses) past its own bomb limit; easel's check comes first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:  # past Pillow's own bound, far past easel's
        raise invalid(parameter, f"{parameter} has too many pixels: over the limit of "
                                 f"{limits.max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise invalid(parameter, f"{parameter} is not a PNG, JPEG or WEBP image") from None


def _check_size(size: tuple[int, int], parameter: str, limits: InputLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise invalid(parameter, f"{parameter} has no pixels ({width}x{height})")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise invalid(parameter, f"{parameter} is {width}x{height}: over the limit of "
                                 f"{limits.max_pixels:,} pixels and {limits.max_side} per side")


def _rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB, and the alpha channel unless every pixel is opaque. 16-bit and float
    greyscale are scaled (a plain convert would clip them); palette transparency becomes
    alpha; CMYK JPEGs convert as Pillow does."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit_grey(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if not has_alpha:
        return np.ascontiguousarray(rgba), None
    alpha = np.ascontiguousarray(rgba[..., 3])
    pixels = np.ascontiguousarray(rgba[..., :3])
    return pixels, (None if bool((alpha == 255).all()) else alpha)


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    values: Any = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    if image.mode == "F":
        top = max(float(values.max(initial=0.0)), 1.0)
    scaled = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, "L")
