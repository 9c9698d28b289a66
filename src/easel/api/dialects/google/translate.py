"""Google Imagen `:predict` <-> core (protocols.md §5, §7). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easel.api.dialects.common import ImageSource, b64, ordered_images, status_of, validate_wire
from easel.api.dialects.google.schemas import PredictRequest
from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job
from easel.domain.request import GenerationRequest, ImageFormat

DIALECT = "google"
# Images per request when sampleCount is absent: the Gemini API documents 4, Vertex 1.
DEFAULT_COUNT_GEMINI = 4
DEFAULT_COUNT_VERTEX = 1
DEFAULT_JPEG_QUALITY = 75
FORMATS = {"image/png": ImageFormat.PNG, "image/jpeg": ImageFormat.JPEG}
LANGUAGES_HONOURED = ("auto", "en")

RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Submission:
    request: GenerationRequest
    ignored: list[str] = field(default_factory=list)


def split_model_action(model_action: str) -> tuple[str, str]:
    """`imagen-4.0-generate-001:predict` -> (model, action); `models/` prefix tolerated."""
    model, sep, action = model_action.rpartition(":")
    if not sep:
        raise EaselError(ErrorKind.NOT_FOUND, f"no method on {model_action!r}; use "
                         f"{model_action}:predict", "model")
    return model.removeprefix("models/"), action


def to_submission(
    catalog: Catalog, model_id: str, body: dict[str, Any], default_count: int
) -> Submission:
    try:
        model = catalog.model(model_id)
    except EaselError as err:
        raise EaselError(
            ErrorKind.UNKNOWN_MODEL,
            f"models/{model_id} is not found or is not supported for predict; known models: "
            f"{', '.join(catalog.model_ids)}",
            "model",
        ) from err
    wire = validate_wire(PredictRequest, body)
    p = wire.parameters
    prompt = wire.instances[0].prompt
    model.check_prompt(prompt, "instances[0].prompt")
    model.check_negative_prompt(p.negativePrompt, "parameters.negativePrompt")
    count = default_count if p.sampleCount is None else p.sampleCount
    model.check_count(count, "parameters.sampleCount")

    resolution = p.sampleImageSize.lower()
    if resolution not in model.resolutions:
        allowed = ", ".join(r.upper() for r in model.resolutions)
        raise invalid(
            "parameters.sampleImageSize",
            f"sampleImageSize {p.sampleImageSize!r} is not supported by {model.id}; "
            f"allowed: {allowed}",
            [r.upper() for r in model.resolutions],
        )
    try:
        size = model.size_for(p.aspectRatio, resolution)
    except EaselError as err:
        raise invalid(
            "parameters.aspectRatio", err.message.replace("aspect_ratio", "aspectRatio", 1),
            err.allowed,
        ) from None

    options = p.outputOptions
    fmt = FORMATS[options.mimeType] if options else ImageFormat.PNG
    quality = DEFAULT_JPEG_QUALITY
    if options is not None and options.compressionQuality is not None:
        quality = max(1, options.compressionQuality)  # 0 and 1 encode alike

    return Submission(
        GenerationRequest(
            model=model.id,
            prompt=prompt,
            width=size.width,
            height=size.height,
            num_images=count,
            negative_prompt=p.negativePrompt or None,
            seed=p.seed,
            output_format=fmt,
            output_quality=quality,
        ),
        ignored_fields(wire, fmt),
    )


def ignored_fields(wire: PredictRequest, fmt: ImageFormat) -> list[str]:
    """Accepted fields easel cannot act on; the reply names them in a header."""
    p = wire.parameters
    ignored = []
    if p.addWatermark:
        ignored.append("addWatermark")
    if p.enhancePrompt:
        ignored.append("enhancePrompt")
    if p.personGeneration is not None:
        ignored.append("personGeneration")
    if p.safetySetting is not None:
        ignored.append("safetySetting")
    if p.language is not None and p.language.lower() not in LANGUAGES_HONOURED:
        ignored.append("language")
    if p.includeRaiReason:
        ignored.append("includeRaiReason")
    if p.includeSafetyAttributes:
        ignored.append("includeSafetyAttributes")
    if (
        p.outputOptions is not None
        and p.outputOptions.compressionQuality is not None
        and fmt is ImageFormat.PNG
    ):
        ignored.append("outputOptions.compressionQuality")
    return ignored


async def render(job: Job, images: ImageSource) -> dict[str, Any]:
    mime = job.request.output_format.mime
    return {
        "predictions": [
            {"bytesBase64Encoded": b64(await images.image_bytes(image)),
             "mimeType": image.mime or mime}
            for image in ordered_images(job)
        ]
    }


def error_body(status: int, message: str, parameter: str | None = None) -> dict[str, Any]:
    """A Google RPC error; a named parameter also rides in a BadRequest field violation."""
    error: dict[str, Any] = {
        "code": status, "message": message, "status": RPC_STATUS.get(status, "UNKNOWN")
    }
    if parameter and status == 400:
        error["details"] = [{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": parameter, "description": message}],
        }]
    return {"error": error}


def easel_error_body(err: EaselError) -> tuple[int, dict[str, Any]]:
    status = status_of(err)
    return status, error_body(status, err.message, err.parameter)
