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

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import re
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from easel.domain.errors import invalid
from easel.domain.generation import REPAINT_FROM
from easel.domain.submission import Caller, ImageInput, ImagesIn, MaskRule, Outpaint
from easel.services.delivery.outbound import fetch
from easel.store.blobs import BlobStore

# (the caller's principal, an image id) -> the bytes of its upload or job image of that id, or
# None when it has none (services/images/uploads.py)
StoredImages = Callable[[str, str], "bytes | None"]
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
    has_alpha_channel: bool = False  # the file has one, even if every pixel is opaque

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
    return InputImage(pixels, alpha, str(image.format).lower(), hashlib.sha256(data).hexdigest(),
                      _has_alpha(oriented))


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
                                 f"{limits.max_pixels:,} pixels or {limits.max_side} per side")


def _rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB, and the alpha channel unless every pixel is opaque. 16-bit and float
    greyscale are scaled (a plain convert would clip them); palette transparency becomes
    alpha; CMYK JPEGs convert as Pillow does."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit_grey(image)
    has_alpha = _has_alpha(image)
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if not has_alpha:
        return np.ascontiguousarray(rgba), None
    alpha = np.ascontiguousarray(rgba[..., 3])
    pixels = np.ascontiguousarray(rgba[..., :3])
    return pixels, (None if bool((alpha == 255).all()) else alpha)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    values: Any = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    if image.mode == "F":
        top = max(float(values.max(initial=0.0)), 1.0)
    scaled = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, "L")


# -- a job's inputs: prepared at submission, kept in the image store until the job ends ---------

DEFAULT_STRENGTH = 0.8  # Runware's default for seedImage; every dialect that takes one agrees
MAX_REFERENCES = 16  # images one edit by instruction may be shown (OpenAI takes 16)


def input_keys(job_id: str) -> tuple[str, str]:
    """Where a job's input image and mask are kept: by its id, so a retry of the same task id
    writes the same files and a worker finds them after a crash."""
    return f"input-{job_id}.png", f"mask-{job_id}.png"


def reference_keys(job_id: str, count: int) -> tuple[str, ...]:
    """Where the images after the first of an edit by instruction are kept (1..count)."""
    return tuple(f"input-{job_id}-{i}.png" for i in range(1, count + 1))


@dataclass(frozen=True)
class ReadInputs:
    """A request's inputs fetched and decoded (the mask checked against the image's size)."""

    image: InputImage
    mask: InputImage | None
    mask_rule: MaskRule = MaskRule.WHITE
    mask_dilation: float = 0.0
    references: tuple[InputImage, ...] = ()  # more images shown with `image` (instruction)
    outpaint: Outpaint | None = None  # extend `image` (fitted within the margins, drawn)

    @property
    def size(self) -> tuple[int, int]:
        """The shape the request draws: the image's, with the margins when it is extended."""
        width, height = self.image.width, self.image.height
        return (width, height) if self.outpaint is None else self.outpaint.canvas(width, height)


@dataclass(frozen=True)
class PreparedInputs:
    """A request's inputs, decoded and fitted (PNG, not stored yet: a retry of an existing task
    id must not touch that job's files), and the sha256 of the files the client sent."""

    input_digest: str
    mask_digest: str | None
    image_png: bytes
    mask_png: bytes | None
    reference_pngs: tuple[bytes, ...] = ()
    reference_digests: tuple[str, ...] = ()


class InputImages:
    """Input images of jobs: fetched, decoded and fitted to the job's size at submission, kept
    in the image store as PNG under the job's id, read by its worker, deleted when it ends."""

    def __init__(self, blobs: BlobStore, limits: InputLimits = InputLimits(),
                 allow_loopback: bool = False, fetch_timeout: float = 30.0,
                 stored: StoredImages | None = None, base_url: str | None = None) -> None:
        self.blobs = blobs
        self.limits = limits
        self.allow_loopback = allow_loopback
        self.fetch_timeout = fetch_timeout
        self.stored = stored  # None: an id of an image easel stored names nothing
        # This server's own image URLs name stored images: read, never fetched (a server
        # behind a private address could not fetch its own URLs through the outbound guard).
        self.own_images = None if base_url is None else base_url.rstrip("/") + "/images/"

    async def read(self, images_in: ImagesIn, caller: Caller) -> ReadInputs:
        """Fetch and decode the inputs; an EaselError naming the client's parameter when one
        is refused (not an image, too large, a mask of another size, a refused URL, an id that
        names no image of the caller's)."""
        data = await self.fetched(images_in.image, caller)
        mask_data = None if images_in.mask is None else await self.fetched(images_in.mask,
                                                                          caller)
        shown = [await self.fetched(given, caller) for given in images_in.references]
        # Decoding is CPU work: off the event loop.
        read = await asyncio.to_thread(self._decoded, images_in, data, mask_data)
        references = await asyncio.to_thread(
            lambda: tuple(decode(d, given.parameter, self.limits)
                          for d, given in zip(shown, images_in.references, strict=True)))
        return replace(read, references=references)

    def _decoded(self, images_in: ImagesIn, data: bytes, mask_data: bytes | None) -> ReadInputs:
        image = decode(data, images_in.image.parameter, self.limits)
        if images_in.outpaint is not None:
            _check_size(images_in.outpaint.canvas(image.width, image.height),
                        images_in.outpaint.parameter, self.limits)
            return ReadInputs(image, None, outpaint=images_in.outpaint)
        if images_in.mask is None or mask_data is None:
            return ReadInputs(image, None, images_in.mask_rule)
        if not 0 <= images_in.mask_dilation <= 1:
            raise invalid(images_in.mask.parameter, "a mask's dilation is a share of the "
                                                   "image's size, 0..1")
        parameter = images_in.mask.parameter
        mask = decode(mask_data, parameter, self.limits)
        _check_same_size(mask, image, parameter)
        if int(repaint_levels(mask, images_in.mask_rule).max()) < REPAINT_FROM:
            what = "transparent" if images_in.mask_rule is MaskRule.TRANSPARENT else "white"
            raise invalid(parameter, f"{parameter} marks nothing to repaint: paint the area to "
                                     f"change {what}")
        return ReadInputs(image, mask, images_in.mask_rule, images_in.mask_dilation)

    async def fit(self, read: ReadInputs, width: int, height: int) -> PreparedInputs:
        """The inputs fitted to width x height (scaled to cover, centred, cropped), as PNG
        (resampling is CPU work: a thread)."""
        return await asyncio.to_thread(_fitted, read, width, height)

    async def as_shown(self, read: ReadInputs) -> PreparedInputs:
        """The images of an edit by instruction, each kept in its own shape (the model is
        shown them as they are), scaled to at most REFERENCE_PIXELS and at least
        REFERENCE_MIN_SIDE a side, as PNG."""
        return await asyncio.to_thread(_shown, read)

    async def keep(self, prepared: PreparedInputs, job_id: str) -> None:
        """Store a new job's inputs under its id, before the job is inserted."""
        image_key, mask_key = input_keys(job_id)
        await asyncio.to_thread(self.blobs.put, image_key, prepared.image_png, "image/png")
        if prepared.mask_png is not None:
            await asyncio.to_thread(self.blobs.put, mask_key, prepared.mask_png, "image/png")
        keys = reference_keys(job_id, len(prepared.reference_pngs))
        for key, data in zip(keys, prepared.reference_pngs, strict=True):
            await asyncio.to_thread(self.blobs.put, key, data, "image/png")

    async def fetched(self, given: ImageInput, caller: Caller) -> bytes:
        """The file's bytes, however the client named it (not decoded yet)."""
        if given.data is not None:
            return given.data
        found = reference(given.text, given.parameter, self.limits)
        if found.data is not None:
            return found.data
        stored_id = found.stored_id
        if found.url is not None:
            stored_id = self._own_image(found.url)
            if stored_id is None:
                return await fetch(found.url, given.parameter, self.limits.max_bytes,
                                   self.fetch_timeout, self.allow_loopback)
        assert stored_id is not None
        data = None if self.stored is None else await asyncio.to_thread(
            self.stored, caller.principal, stored_id)
        if data is None:
            raise invalid(given.parameter, f"{given.parameter} names no image of yours "
                                           f"({stored_id}): not an upload of yours or an "
                                           "image of one of your tasks, or it has expired")
        return data

    def _own_image(self, url: str) -> str | None:
        """The image id in one of this server's image URLs (…/images/<id>.<ext>), else None."""
        if self.own_images is None or not url.startswith(self.own_images):
            return None
        name = url[len(self.own_images):].split("?", 1)[0]
        image_id = name.rpartition(".")[0].lower()
        return image_id if _is_uuid(image_id) else None

    def load(self, job_id: str, references: int = 0) -> dict[str, np.ndarray]:
        """The job's stored inputs as the engine takes them, by key (a worker's side);
        `references`: how many images after the first it was sent."""
        found = {}
        for key in (*input_keys(job_id), *reference_keys(job_id, references)):
            data = self.blobs.get(key)
            if data is not None:
                found[key] = np.asarray(Image.open(io.BytesIO(data)))
        return found

    def discard(self, job_id: str) -> None:
        """The job ended: its inputs go (a failure to delete them is not the job's). The
        images after the first are numbered from 1: they go until one is not there."""
        for key in input_keys(job_id):
            with contextlib.suppress(Exception):
                self.blobs.delete(key)
        for index in range(1, MAX_REFERENCES + 1):
            (key,) = reference_keys(job_id, index)[-1:]
            with contextlib.suppress(Exception):
                opened = self.blobs.open(key)
                if opened is None:
                    return
                close = getattr(opened[1], "close", None)
                if close is not None:
                    close()
                self.blobs.delete(key)


def _fitted(read: ReadInputs, width: int, height: int) -> PreparedInputs:
    image, mask = read.image, read.mask
    if read.outpaint is not None:
        return _outpainted(image, read.outpaint, width, height)
    fitted = _fit(Image.fromarray(image.pixels), width, height, Image.Resampling.LANCZOS)
    shown = tuple(_png(_fit(Image.fromarray(r.pixels), width, height, Image.Resampling.LANCZOS))
                  for r in read.references)
    digests = tuple(r.digest for r in read.references)
    if mask is None:
        return PreparedInputs(image.digest, None, _png(fitted), None, shown, digests)
    repaint = Image.fromarray(repaint_levels(mask, read.mask_rule))
    # Nearest: a mask's edge stays where the client drew it, with no new grey levels.
    fitted_mask = _fit(repaint, width, height, Image.Resampling.NEAREST)
    if read.mask_dilation > 0:
        fitted_mask = _dilated(fitted_mask, round(read.mask_dilation * max(width, height)))
    return PreparedInputs(image.digest, mask.digest, _png(fitted), _png(fitted_mask))


def _outpainted(image: InputImage, outpaint: Outpaint, width: int, height: int
                ) -> PreparedInputs:
    """An extended image drawn at width x height: the image fitted within the margins (scaled
    to cover, centred, cropped; as sent when it is that size already), its edge pixels carried
    out over them (drawn afresh at strength 1; at a lower strength they are the start), and the
    mask of what is drawn: the margins, and `blur` pixels of the image along each new edge."""
    inner = (width - outpaint.left - outpaint.right, height - outpaint.top - outpaint.bottom)
    if min(inner) < 1:
        raise invalid(outpaint.parameter, f"{outpaint.parameter}: the margins leave no room for "
                      f"the image in the {width}x{height} drawn")
    fitted = np.asarray(_fit(Image.fromarray(image.pixels), *inner, Image.Resampling.LANCZOS))
    margins = ((outpaint.top, outpaint.bottom), (outpaint.left, outpaint.right), (0, 0))
    pixels = np.pad(fitted, margins, mode="edge")
    levels = np.full((height, width), 255, np.uint8)
    blur = {side: outpaint.blur if margin else 0 for side, margin in (
        ("top", outpaint.top), ("bottom", outpaint.bottom), ("left", outpaint.left),
        ("right", outpaint.right))}
    levels[outpaint.top + blur["top"]:outpaint.top + inner[1] - blur["bottom"],
           outpaint.left + blur["left"]:outpaint.left + inner[0] - blur["right"]] = 0
    mask_png = _png(Image.fromarray(levels))
    return PreparedInputs(image.digest, hashlib.sha256(mask_png).hexdigest(),
                          _png(Image.fromarray(pixels)), mask_png)


def _dilated(mask: Image.Image, radius: int) -> Image.Image:
    """The repainted area grown by `radius` pixels every way (a disc: no square corners)."""
    if radius < 1:
        return mask
    import cv2

    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return Image.fromarray(cv2.dilate(np.asarray(mask), disc))


# What FLUX.2 [klein] takes as a reference image: it shrinks larger ones to a megapixel itself
# and refuses a side under 64 pixels.
REFERENCE_PIXELS = 1024 * 1024
REFERENCE_MIN_SIDE = 64


def _shown(read: ReadInputs) -> PreparedInputs:
    images = (read.image, *read.references)
    pngs = [_png(_reference_sized(Image.fromarray(image.pixels))) for image in images]
    return PreparedInputs(read.image.digest, None, pngs[0], None, tuple(pngs[1:]),
                          tuple(image.digest for image in read.references))


def _reference_sized(image: Image.Image) -> Image.Image:
    width, height = image.size
    scale = min(1.0, (REFERENCE_PIXELS / (width * height)) ** 0.5)
    scale = max(scale, REFERENCE_MIN_SIDE / min(width, height))
    size = (max(REFERENCE_MIN_SIDE, round(width * scale)),
            max(REFERENCE_MIN_SIDE, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # kept only until the job ends: fast beats small
    return out.getvalue()


def repaint_levels(mask: InputImage, rule: MaskRule = MaskRule.WHITE) -> np.ndarray:
    """The mask as 0..255 levels of "repaint". WHITE: white repaints, and so does a
    transparent pixel. TRANSPARENT (OpenAI): only the alpha channel counts, transparent
    repainted, opaque kept whatever its colour; a mask without alpha falls back to white."""
    if rule is MaskRule.TRANSPARENT and mask.has_alpha_channel:
        if mask.alpha is None:  # every pixel opaque: nothing is repainted
            return np.zeros(mask.pixels.shape[:2], np.uint8)
        return np.ascontiguousarray(255 - mask.alpha)
    levels = np.asarray(Image.fromarray(mask.pixels).convert("L"))
    if mask.alpha is not None:
        levels = np.maximum(levels, 255 - mask.alpha)
    return np.ascontiguousarray(levels)


def _check_same_size(mask: InputImage, image: InputImage, parameter: str) -> None:
    if (mask.width, mask.height) != (image.width, image.height):
        raise invalid(parameter, f"{parameter} is {mask.width}x{mask.height} and the image "
                                 f"{image.width}x{image.height}: they must be the same size")


def _fit(image: Image.Image, width: int, height: int,
         resample: Image.Resampling) -> Image.Image:
    return ImageOps.fit(image, (width, height), method=resample, centering=(0.5, 0.5))
