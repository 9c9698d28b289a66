"""Wire models of easel's own API. Fields not listed here are refused by name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from easel.domain.request import DEFAULT_MAX_SEED


class OutpaintInput(BaseModel):
    """Extend `image`: these many pixels of the output on each side are drawn around it (the
    image is fitted within them); `blur` pixels of the image along each new edge are redrawn
    too, so the model draws the join."""

    model_config = ConfigDict(extra="forbid", strict=True)

    top: int = Field(0, ge=0)
    right: int = Field(0, ge=0)
    bottom: int = Field(0, ge=0)
    left: int = Field(0, ge=0)
    blur: int = Field(0, ge=0, le=64)


class LoraInput(BaseModel):
    """An allow-listed LoRA adapter (`easel lora list`) and its weight, -4..4 (absent: the
    adapter's default)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    weight: float | None = None


class JobInput(BaseModel):
    """The body of `POST /easel/jobs`: any catalog model id, with its own limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    prompt: str = ""  # required to draw; an upscaler (`upscale`) takes none
    negative_prompt: str | None = None
    aspect_ratio: str = "1:1"
    resolution: str = "1k"
    num_images: int = 1
    seed: int | None = Field(None, ge=0, le=DEFAULT_MAX_SEED)
    output_format: Literal["jpeg", "png", "webp"] = "jpeg"
    output_quality: int = Field(95, ge=1, le=100)
    steps: int | None = None
    guidance_scale: float | None = None
    # docs/safety.md: the content check of the outputs (off unless asked), what becomes of a
    # flagged image, people, the invisible watermark, the prompt rewrite.
    safety_setting: Literal["block_none", "block_low_and_above", "block_medium_and_above",
                            "block_only_high"] = "block_none"
    on_flagged: Literal["flag", "withhold"] = "flag"
    person_generation: Literal["dont_allow", "allow_adult", "allow_all"] = "allow_all"
    watermark: bool = False
    enhance_prompt: bool = False
    loras: list[LoraInput] = Field(default_factory=list)
    # Drawing from an image (a data URI, base64 or an https URL): image-to-image at `strength`
    # (0..1, default 0.8: low stays close to it), or with `mask` (white or transparent is
    # repainted, the same size as the image) inpainting.
    image: str | None = None
    mask: str | None = None
    strength: float | None = None
    # Or with `outpaint` margins, extending it (strength 1 by default: the margins drawn afresh).
    outpaint: OutpaintInput | None = None
    # Or enlarge it this many times each side, with an upscaler's model id (easel/upscale).
    upscale: Literal[2, 3, 4] | None = None
    # The client's own id: sending the same one again returns that job (idempotency).
    task_id: str | None = Field(None, min_length=1, max_length=100)
