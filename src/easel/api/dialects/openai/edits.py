"""OpenAI's image edits: `POST /v1/images/edits` (protocols-images-in.md §1). Pure functions
but the reading of the uploaded files.

Mapping rules (also in docs/openai.md):
- The body is multipart/form-data as every openai SDK sends it: the file parts `image` (one)
  or `image[]` (a list, even of one), and `mask`; every other field is text. A part may also
  carry a URL or a data URL as text. A JSON body takes the newer reference's shape:
  `images: [{"image_url": ...}]`, `mask: {"image_url": ...}`.
- With a mask (transparent pixels are repainted, as OpenAI defines it; a mask without alpha:
  white) the first image is inpainted, at `strength` 1 unless the client sends `strength`.
  Without one it is an edit by instruction: a tier whose model edits from reference images
  (Fast) is shown every image (up to 16); another redraws the one image at `strength` 0.8, or
  0.5 with `input_fidelity: "high"` (several images are refused there, naming `image[1]`).
- `size` absent or `auto`: the input's shape, at the model's nearest size. The other fields are
  those of generations (translate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile

from easel.api.dialects.common import validate_wire
from easel.api.dialects.openai.schemas import ImageReference, ImagesEditRequest
from easel.api.dialects.openai.translate import ImagesRequest, from_wire
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.submission import Caller, ImageInput, ImagesIn, MaskRule

MAX_IMAGES = 16  # OpenAI's limit for its GPT image models
IMAGE_PARTS = ("image", "image[]")
# Strengths when the client sends none: a hole is drawn afresh; a whole image is redrawn
# keeping its layout, closer to the input when it asks for high fidelity.
INPAINT_STRENGTH = 1.0
HIGH_FIDELITY_STRENGTH = 0.5
EDIT_EVENTS = ("image_edit.partial_image", "image_edit.completed")


@dataclass(frozen=True)
class EditBody:
    """An edit request as it came: its other fields (text, or JSON values), its images in order
    and its mask, each named as the client sent it."""

    fields: dict[str, Any]
    images: tuple[ImageInput, ...]
    mask: ImageInput | None


async def from_form(form: FormData) -> EditBody:
    """The edit in a parsed multipart body. Each image is named `image` (one part `image`) or
    `image[i]` (the parts `image[]`, or several `image`)."""
    fields: dict[str, Any] = {}
    images: list[tuple[str, ImageInput]] = []
    mask = None
    for key, value in form.multi_items():
        if key in IMAGE_PARTS:
            images.append((key, await _image(value, key)))
        elif key == "mask":
            mask = await _image(value, "mask")
        elif isinstance(value, UploadFile):
            raise invalid(key, f"{key} must be a text field, not a file")
        else:
            fields[key] = value
    named = tuple(
        ImageInput("image" if key == "image" and len(images) == 1 else f"image[{i}]",
                   given.text, given.data)
        for i, (key, given) in enumerate(images))
    return EditBody(fields, named, mask)


async def _image(value: UploadFile | str, parameter: str) -> ImageInput:
    if isinstance(value, UploadFile):
        return ImageInput(parameter, data=await value.read())
    return ImageInput(parameter, text=value)  # a URL or data URL sent as text


def from_json(body: dict[str, Any]) -> EditBody:
    """The edit in a JSON body: `images` (or one `image`) and `mask` as `{"image_url": ...}`
    or plain strings."""
    fields = {k: v for k, v in body.items() if k not in ("images", "image", "mask")}
    given = body.get("images", body.get("image"))
    name = "images" if "images" in body else "image"
    listed = given if isinstance(given, list) else [] if given is None else [given]
    images = tuple(_referenced(item, f"{name}[{i}]" if isinstance(given, list) else name)
                   for i, item in enumerate(listed))
    mask = None if body.get("mask") is None else _referenced(body["mask"], "mask")
    return EditBody(fields, images, mask)


def _referenced(item: object, parameter: str) -> ImageInput:
    if isinstance(item, str):
        return ImageInput(parameter, text=item)
    if not isinstance(item, dict):
        raise invalid(parameter, f"{parameter} must be an object with image_url")
    found = validate_wire(ImageReference, item, parameter)
    if found.file_id is not None:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{parameter}.file_id names a file of OpenAI's "
                         "Files API, which easel does not serve; send image_url (a URL or a "
                         "data URL)", f"{parameter}.file_id")
    if found.image_url is None:
        raise EaselError(ErrorKind.MISSING, f"{parameter}.image_url is required",
                         f"{parameter}.image_url")
    return ImageInput(parameter, text=found.image_url)


def to_submission(body: EditBody, caller: Caller, idempotency_key: str | None = None,
                  retries_taken: int = 0) -> ImagesRequest:
    wire = validate_wire(ImagesEditRequest, body.fields)
    # AIML's image_urls (a text field here) add images after the parts.
    body = EditBody(body.fields, body.images + tuple(
        ImageInput(f"image_urls[{i}]", text=url) for i, url in enumerate(wire.image_urls or ())),
        body.mask)
    if not body.images:
        raise EaselError(ErrorKind.MISSING, "image is required: the image to edit (a file "
                         "part image, or image[] for a list)", "image")
    if len(body.images) > MAX_IMAGES:
        raise invalid(body.images[MAX_IMAGES].parameter, f"at most {MAX_IMAGES} images may be "
                      f"sent, got {len(body.images)}")
    first, *more = body.images
    images_in = ImagesIn(first, body.mask, wire.strength, MaskRule.TRANSPARENT,
                         instruction=body.mask is None, references=tuple(more),
                         default_strength=_default_strength(wire, body.mask is not None))
    return from_wire(wire, caller, idempotency_key, retries_taken, images_in)


def _default_strength(wire: ImagesEditRequest, masked: bool) -> float | None:
    if masked:
        return INPAINT_STRENGTH
    return HIGH_FIDELITY_STRENGTH if wire.input_fidelity == "high" else None
