"""OpenAI images + AIML wire models (protocols.md §3, §4). Unknown fields are refused by name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AIML_MAX_SEED = 4294967295

Quality = Literal["auto", "low", "medium", "high", "standard", "hd"]


class Lora(BaseModel):
    """An allow-listed LoRA adapter and its weight (-4..4; absent: the adapter's default)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    weight: float | None = None


class ImagesGenerateRequest(BaseModel):
    """`POST /v1/images/generations`: OpenAI's fields, then AIML's Imagen fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: Quality | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    background: Literal["auto", "opaque", "transparent"] | None = None
    moderation: Literal["auto", "low"] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=3)

    # AIML (sent by the openai SDK through extra_body)
    num_images: int | None = None
    aspect_ratio: str | None = None
    convert_base64_to_url: bool | None = None
    seed: int | None = Field(None, ge=0, le=AIML_MAX_SEED)
    negative_prompt: str | None = None
    enhance_prompt: bool | None = None
    person_generation: Literal["dont_allow", "allow_adult", "allow_all"] | None = None
    safety_setting: (
        Literal["block_low_and_above", "block_medium_and_above", "block_only_high", "block_none"]
        | None
    ) = None
    add_watermark: bool | None = None
    # AIML's Gemini edit ids: the images to edit, each a URL or a data URL
    image_urls: list[str] | None = Field(None, min_length=1, max_length=14)

    # easel's own (extra_body): LoRA adapters this server allow-lists (docs/lora.md)
    loras: list[Lora] | None = None


class ImagesEditRequest(ImagesGenerateRequest):
    """`POST /v1/images/edits`'s fields besides the images and the mask. A multipart body's
    fields are all text, so values are read as their types ("2" is 2, "true" is true)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    input_fidelity: Literal["high", "low"] | None = None
    # easel's own (extra_body): the share of the schedule re-run (low: close to the input)
    strength: float | None = Field(None, gt=0, le=1)


class ImageReference(BaseModel):
    """An image of a JSON edit body: a URL or data URL (`file_id` names OpenAI's Files API,
    which easel does not serve)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_url: str | None = None
    file_id: str | None = None
