"""Google Imagen `:predict` wire models (protocols.md §5), with field names exactly as the REST
API (and google-genai) spells them. Unknown fields are refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_SEED = 4294967295  # uint32


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# google-genai sends its enums upper-case (ALLOW_ADULT); REST docs show them lower-case.
PersonGeneration = Annotated[
    Literal["dont_allow", "allow_adult", "allow_all"], BeforeValidator(_lower)
]
SafetySetting = Annotated[
    Literal["block_low_and_above", "block_medium_and_above", "block_only_high", "block_none"],
    BeforeValidator(_lower),
]
ImageSize = Annotated[Literal["1K", "2K"], BeforeValidator(_upper)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImageData(_Wire):
    """An image in a :predict body: base64 bytes (or a Cloud Storage URI, not read here)."""

    bytesBase64Encoded: str | None = None
    gcsUri: str | None = None
    mimeType: str | None = None


class MaskImageConfig(_Wire):
    maskMode: Annotated[str, BeforeValidator(_upper)] | None = None
    dilation: float | None = Field(None, ge=0, le=1)
    maskClasses: list[int] | None = None


class ReferenceImage(_Wire):
    """An image an edit is drawn from (Vertex's capability models): RAW is the image, MASK
    where to edit; CONTROL, STYLE and SUBJECT references are named so they can be refused."""

    referenceType: Annotated[str, BeforeValidator(_upper)]
    referenceId: int | None = None
    referenceImage: ImageData | None = None
    maskImageConfig: MaskImageConfig | None = None
    controlImageConfig: dict[str, Any] | None = None
    styleImageConfig: dict[str, Any] | None = None
    subjectImageConfig: dict[str, Any] | None = None


class Instance(_Wire):
    prompt: str = ""  # required to draw; the upscale model takes none
    referenceImages: list[ReferenceImage] | None = None
    image: ImageData | None = None  # the upscale model's input


class EditConfig(_Wire):
    baseSteps: int | None = None


class OutputOptions(_Wire):
    mimeType: Literal["image/png", "image/jpeg"] = "image/png"
    compressionQuality: int | None = Field(None, ge=0, le=100)


class UpscaleConfig(_Wire):
    """Vertex's upscale model: the factor ("x2", "x3", "x4"); google-genai's two tuning fields
    for Imagen's own generative upscaler are accepted and reported as ignored."""

    upscaleFactor: Literal["x2", "x3", "x4"] | None = None
    enhanceInputImage: bool | None = None
    imagePreservationFactor: float | None = Field(None, ge=0, le=1)


class Parameters(_Wire):
    sampleCount: int | None = None
    aspectRatio: str = "1:1"
    sampleImageSize: ImageSize = "1K"
    personGeneration: PersonGeneration | None = None
    safetySetting: SafetySetting | None = None
    addWatermark: bool | None = None
    enhancePrompt: bool | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    negativePrompt: str | None = None
    guidanceScale: float | None = None
    outputOptions: OutputOptions | None = None
    language: str | None = None
    includeRaiReason: bool | None = None
    includeSafetyAttributes: bool | None = None
    # Editing (the capability models): what to do with the reference images.
    editMode: Annotated[str, BeforeValidator(_upper)] | None = None
    editConfig: EditConfig | None = None
    baseSteps: int | None = None
    # Upscaling (imagen-4.0-upscale-preview): `mode` "upscale" and the factor.
    mode: Annotated[str, BeforeValidator(_lower)] | None = None
    upscaleConfig: UpscaleConfig | None = None


class PredictRequest(_Wire):
    instances: list[Instance] = Field(min_length=1, max_length=1)
    parameters: Parameters = Field(default_factory=lambda: Parameters.model_validate({}))
    # Vertex's billing labels (google-genai's `labels=`, top level on generate, edit and
    # upscale): nothing to bill here, so taken and named as ignored.
    labels: dict[str, str] | None = None
