"""Wire models of the Gemini API's `generateContent` for the image models (docs/gemini.md).

google-genai sends camelCase; Google's API also takes the proto's snake_case names, so both
spellings are accepted. A field easel does not know is refused by name, as Google refuses an
unknown name; the fields of the request that mean nothing for an image (tools, a response
schema) are not declared, so they are refused the same way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Modality = Literal["TEXT", "IMAGE"]
ThinkingLevel = Literal["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH",
                        "XHIGH"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              strict=True)


class Blob(_Wire):
    mime_type: str | None = None
    data: str


class FileData(_Wire):
    mime_type: str | None = None
    file_uri: str


class Part(_Wire):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    thought: bool | None = None
    thought_signature: str | None = None  # round-tripped by clients; easel issues none


class Content(_Wire):
    role: Literal["user", "model"] | None = None
    parts: list[Part] = Field(default_factory=list)


class SafetySetting(_Wire):
    category: str
    threshold: str
    method: str | None = None


class ThinkingConfig(_Wire):
    include_thoughts: bool | None = None
    thinking_level: ThinkingLevel | None = None
    thinking_budget: int | None = None


class ImageOutputOptions(_Wire):
    mime_type: str | None = None
    compression_quality: int | None = Field(None, ge=0, le=100)


class ImageConfig(_Wire):
    aspect_ratio: str | None = None
    image_size: str | None = None
    person_generation: Literal["ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE"] | None = None
    image_output_options: ImageOutputOptions | None = None


class GenerationConfig(_Wire):
    # What an image model acts on.
    candidate_count: int | None = None
    seed: int | None = None
    response_modalities: list[Modality] | None = None
    image_config: ImageConfig | None = None
    thinking_config: ThinkingConfig | None = None
    # Sampling fields of text models: taken, and named in x-easel-ignored-fields.
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_mime_type: Literal["text/plain"] | None = None


class GenerateContentRequest(_Wire):
    """`POST .../models/{model}:generateContent` (and `:streamGenerateContent`)."""

    contents: list[Content] = Field(min_length=1)
    system_instruction: Content | None = None
    safety_settings: list[SafetySetting] | None = None
    generation_config: GenerationConfig | None = None
    labels: dict[str, str] | None = None  # Vertex's billing labels: nothing to bill here
