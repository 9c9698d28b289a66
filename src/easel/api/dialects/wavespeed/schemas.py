"""WaveSpeed v3 wire models (protocols.md §2). Fields not listed here are refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_SEED = 9999999999  # wavespeed-ai/imagen4's seed document: -1 ~ 9999999999


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Resolution = Annotated[str, BeforeValidator(_lower)]  # "2K" and "2k" alike


class ImagenInput(BaseModel):
    """The body of `POST /api/v3/{model_id}` for the Imagen 4 models."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    negative_prompt: str = ""
    aspect_ratio: str = "1:1"
    resolution: Resolution = "1k"
    num_images: int = 1
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    # WaveSpeed's other image models take output_format; Imagen pages do not list it (easel
    # accepts it so each format is reachable from this dialect).
    output_format: Literal["jpeg", "png", "webp"] = "jpeg"
    enable_base64_output: bool = False
    # Sampling controls self-hosting users expect; bounded per backend by the catalog.
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    enable_sync_mode: bool = False
    # WaveSpeed's content check of the outputs (has_nsfw_contents); docs/safety.md.
    enable_safety_checker: bool = True
    webhook_url: str | None = None


class GoogleEditInput(BaseModel):
    """The body of WaveSpeed's Google edit models (`google/gemini-2.5-flash-image/edit`,
    `google/nano-banana-2/edit`, `.../edit-fast`, `google/nano-banana-pro/edit`): the images
    to edit (URLs, data URIs or base64) and what to change."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    images: list[str] = Field(min_length=1, max_length=14)
    aspect_ratio: str | None = None  # None: the first image's shape
    resolution: Resolution = "1k"
    num_images: int = 1
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    output_format: Literal["jpeg", "png", "webp"] = "jpeg"
    enable_base64_output: bool = False
    enable_sync_mode: bool = False
    enable_safety_checker: bool = True
    webhook_url: str | None = None
