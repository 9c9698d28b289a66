"""OpenAI images + AIML <-> core (protocols.md §3, §4, §6, §7). Pure functions.

Mapping rules (also in docs/openai.md):
- `model`: any catalog id (AIML's `google/imagen-4.0-...`, Google's `imagen-4.0-...`, ...), or a
  generic id (`imagen-4`, `imagen4`, or none at all) whose tier `quality` picks:
  low -> fast, medium | standard | auto -> standard, high | hd -> ultra. The generic id then runs
  as the Google model id of that tier. A specific id fixes its tier; a `quality` naming another
  tier is refused, never silently overridden.
- `size` WxH: the model's size with the nearest aspect ratio (log scale), then the nearest
  resolution it offers (pixel count); see Model.nearest_size. The size produced is echoed in the
  reply's `size`. `auto`/absent: AIML's `aspect_ratio` if given, else 1:1, at 1K.
- `n` and AIML's `num_images` are the same thing; if both come, they must agree.
- `response_format` and AIML's `convert_base64_to_url` are the same thing; default: URLs.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from easel.api.dialects.common import (
    ErrorTable,
    ImageSource,
    all_withheld,
    b64,
    delivered_images,
    iso_ms,
    validate_wire,
)
from easel.api.dialects.openai.schemas import ImagesGenerateRequest
from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job
from easel.domain.lora import LoraChoice
from easel.domain.request import ImageFormat
from easel.domain.safety import (
    EnhancementState,
    OnFlagged,
    PersonGeneration,
    SafetyInput,
    SafetyLevel,
)
from easel.domain.submission import (
    AspectRatioSize,
    Caller,
    ExactSize,
    GenerationInput,
    ImageInput,
    ImagesIn,
    ModelChoice,
    NearestSize,
    SizeChoice,
    Submission,
    WireNames,
)

DIALECT = "openai"
GENERIC_MODELS = ("imagen-4", "imagen4")
GENERIC_PROVIDER = "google"  # a generic id runs as this provider's model id of the tier
QUALITY_TIER = {
    "low": "fast",
    "medium": "standard",
    "standard": "standard",
    "auto": "standard",
    "high": "ultra",
    "hd": "ultra",
}
TIER_QUALITY = {"fast": "low", "standard": "medium", "ultra": "high"}
AIML_CREDITS_PER_USD = 2_000_000  # docs.aimlapi.com: $1 = 2,000,000 credits
DEFAULT_COMPRESSION = 100  # OpenAI's default output_compression
SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d7c1e-3f0e-4d55-9a43-2f6f3c0d5e11")
NAMES = WireNames({"tier": "quality", "output_quality": "output_compression",
                   "task_id": "Idempotency-Key"})


@dataclass(frozen=True)
class ImagesRequest:
    """A translated request: the Submission, and how this dialect will render the reply."""

    submission: Submission
    b64_json: bool
    ignored: list[str] = field(default_factory=list)
    stream: bool = False  # server-sent events: partial images, then each image


def model_choice(model_id: str | None, quality: str | None) -> ModelChoice:
    """A generic id (or none) runs the Google model of the tier `quality` picks; a specific id
    fixes its tier, and a `quality` naming another tier is refused, never silently overridden."""
    if model_id is None or model_id in GENERIC_MODELS:
        return ModelChoice(None, QUALITY_TIER[quality or "auto"], GENERIC_PROVIDER)
    tier = QUALITY_TIER[quality] if quality is not None and quality != "auto" else None
    return ModelChoice(model_id, tier)


def size_choice(size: str | None, aspect_ratio: str | None) -> SizeChoice | None:
    explicit = size is not None and size != "auto"
    if explicit and aspect_ratio is not None:
        raise invalid("aspect_ratio", "give size or aspect_ratio, not both")
    if explicit:
        assert size is not None
        match = SIZE_RE.match(size)
        if match is None:
            raise invalid("size", f"size must be 'auto' or WIDTHxHEIGHT (e.g. 1024x1024), "
                                  f"got {size!r}")
        return NearestSize(int(match[1]), int(match[2]))
    return AspectRatioSize(aspect_ratio) if aspect_ratio is not None else None


def to_submission(
    body: dict[str, Any], caller: Caller, idempotency_key: str | None = None,
    retries_taken: int = 0,
) -> ImagesRequest:
    """`retries_taken`: the SDK's own count of its automatic retries of this request
    (`x-stainless-retry-count`); a retry without an Idempotency-Key is matched to the job its
    first attempt made, so a timeout the client gave up on does not run twice."""
    wire = validate_wire(ImagesGenerateRequest, body)
    images_in = None
    if wire.image_urls:  # AIML's Gemini edit ids: edit these images by instruction
        first, *more = (ImageInput(f"image_urls[{i}]", text=url)
                        for i, url in enumerate(wire.image_urls))
        images_in = ImagesIn(first, instruction=True, references=tuple(more))
    return from_wire(wire, caller, idempotency_key, retries_taken, images_in)


def from_wire(
    wire: ImagesGenerateRequest, caller: Caller, idempotency_key: str | None = None,
    retries_taken: int = 0, images_in: ImagesIn | None = None,
) -> ImagesRequest:
    """A validated generation or edit body (`images_in`: the edit's image and mask)."""
    if wire.n is not None and wire.num_images is not None and wire.n != wire.num_images:
        raise invalid("num_images", f"n ({wire.n}) and num_images ({wire.num_images}) disagree; "
                                    "give one of them")
    count = wire.n if wire.n is not None else wire.num_images

    if wire.response_format is not None and wire.convert_base64_to_url is not None and (
        (wire.response_format == "url") != wire.convert_base64_to_url
    ):
        raise invalid("convert_base64_to_url", "response_format and convert_base64_to_url "
                                               "disagree; give one of them")
    if wire.response_format is not None:
        b64_json = wire.response_format == "b64_json"
    else:
        b64_json = wire.convert_base64_to_url is False

    if wire.background == "transparent":
        raise EaselError(ErrorKind.UNSUPPORTED, "background 'transparent' is not supported; "
                         "Imagen images are opaque", "background")
    if wire.partial_images and not wire.stream:
        raise invalid("partial_images", "partial_images needs stream: true (the partial images "
                                        "are sent as server-sent events)")

    fmt = ImageFormat(wire.output_format or "png")
    compression = wire.output_compression
    if compression is None:
        compression = DEFAULT_COMPRESSION
    generation = GenerationInput(
        model=model_choice(wire.model, wire.quality),
        prompt=wire.prompt,
        size=size_choice(wire.size, wire.aspect_ratio),
        num_images=1 if count is None else count,
        negative_prompt=wire.negative_prompt or None,
        seed=wire.seed,
        output_format=fmt,
        output_quality=max(1, compression),  # 0 and 1 encode alike; the core wants 1..100
        safety=safety_input(wire),
        # AIML's defaults: the prompt rewritten, no watermark.
        watermark=bool(wire.add_watermark),
        enhance_prompt=wire.enhance_prompt is not False,
        loras=tuple(LoraChoice(lora.name, lora.weight) for lora in wire.loras or ()),
        partial_images=wire.partial_images or 0 if wire.stream else 0,
        images_in=images_in,
    )
    names = NAMES.with_(num_images="n" if wire.n is not None else "num_images")
    if images_in is not None:
        names = names.with_(image=images_in.image.parameter)
    echo = {k: v for k, v in (("user", wire.user), ("safety_identifier", wire.safety_identifier))
            if v}
    submission = Submission(DIALECT, caller, generation, task_id=job_id_for(idempotency_key),
                            names=names, task_id_sent=idempotency_key, echo=echo,
                            repeats_earlier=idempotency_key is None and retries_taken > 0)
    ignored = ignored_fields(wire, fmt)
    if wire.stream and wire.response_format == "url":
        ignored.append("response_format")  # a stream's events carry base64 (b64_json) only
    return ImagesRequest(submission, b64_json or bool(wire.stream), ignored, bool(wire.stream))


# OpenAI's `moderation` as a safety level, where AIML's safety_setting is not given.
MODERATION_LEVELS = {"auto": SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
                     "low": SafetyLevel.BLOCK_ONLY_HIGH}


def safety_input(wire: ImagesGenerateRequest) -> SafetyInput:
    """AIML's safety_setting (default block_medium_and_above) and person_generation (default
    allow_adult); a flagged image is withheld, as OpenAI and AIML do."""
    if wire.safety_setting is not None and wire.moderation is not None:
        raise invalid("moderation", "give safety_setting or moderation, not both")
    if wire.safety_setting is not None:
        level = SafetyLevel(wire.safety_setting)
    else:
        level = MODERATION_LEVELS[wire.moderation or "auto"]
    people = PersonGeneration(wire.person_generation or "allow_adult")
    return SafetyInput(level, OnFlagged.WITHHOLD, people)


def ignored_fields(wire: ImagesGenerateRequest, fmt: ImageFormat) -> list[str]:
    """Fields accepted with values easel cannot act on; the reply names them in a header."""
    ignored = []
    if wire.style is not None:
        ignored.append("style")
    if wire.output_compression is not None and fmt is ImageFormat.PNG:
        ignored.append("output_compression")
    return ignored


def retries_taken(header: str | None) -> int:
    """The openai SDK's `x-stainless-retry-count` (0 on a first attempt; anything else: 0)."""
    return int(header) if header is not None and header.isdigit() and len(header) < 4 else 0


def job_id_for(idempotency_key: str | None) -> str | None:
    """An `Idempotency-Key` header makes the request idempotent: same key, same job. Hashed:
    a header may be any length, and its case counts (task ids are matched in any case)."""
    if idempotency_key is None:
        return None
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))


def model_objects(catalog: Catalog) -> list[dict[str, Any]]:
    """The models endpoint's objects: the generic ids, then every catalog id."""
    created = 1_749_168_000  # 2025-06-06, Imagen 4's release on the hosted APIs
    generic = [{"id": g, "object": "model", "created": created, "owned_by": "easel"}
               for g in GENERIC_MODELS]
    return generic + [
        {"id": m.id, "object": "model", "created": created, "owned_by": m.provider}
        for m in sorted(catalog.models.values(), key=lambda m: m.id)
    ]


async def render(job: Job, images: ImageSource, b64_json: bool) -> dict[str, Any]:
    """OpenAI's reply, with AIML's fal-style `images[]` and `seed` beside it (the openai SDK
    keeps unknown fields; AIML's own examples read them)."""
    blocked = all_withheld(job)
    if blocked is not None:
        raise blocked
    data: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    ordered = delivered_images(job)  # withheld images are left out, as OpenAI and AIML do
    revised = job.request.prompt if job.request.enhancement is EnhancementState.REWRITTEN \
        else None
    for image in ordered:
        url = None if b64_json else images.image_url(job, image)
        item: dict[str, Any] = {"b64_json": b64(await images.image_bytes(image))} if b64_json \
            else {"url": url}
        if revised is not None:
            item["revised_prompt"] = revised
        data.append(item)
        mime = image.mime or job.request.output_format.mime
        files.append({"url": url, "content_type": mime, "file_size": image.size_bytes,
                      "file_name": f"{image.image_id}.{job.request.output_format.extension}"})
    request = job.request
    return {
        "created": int(job.created_at.timestamp()),
        "data": data,
        "images": files,
        "seed": ordered[0].seed if ordered else None,  # image i has seed+i
        "model": request.model,
        "size": f"{request.width}x{request.height}",
        "output_format": request.output_format.value,
        "quality": TIER_QUALITY.get(request.tier),
        "background": "opaque",
        "meta": {"usage": {"credits_used": round(job.cost_usd * AIML_CREDITS_PER_USD)}},
    }


ERRORS = ErrorTable({
    ErrorKind.INVALID: "invalid_value",
    ErrorKind.MISSING: "missing_required_parameter",
    ErrorKind.UNSUPPORTED: "unsupported_parameter",
    ErrorKind.UNKNOWN_MODEL: "model_not_found",
    ErrorKind.NOT_FOUND: "not_found",
    ErrorKind.CONFLICT: "idempotency_key_conflict",
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.UNAVAILABLE: "service_unavailable",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.CANCELLED: "cancelled",
    ErrorKind.WORKER_LOST: "generation_failed",
    ErrorKind.CONTENT_BLOCKED: "content_policy_violation",
    ErrorKind.INFERENCE: "generation_failed",
    ErrorKind.INTERNAL: "server_error",
    ErrorKind.UNAUTHENTICATED: "invalid_api_key",
})


def error_type(status: int) -> str:
    """OpenAI's `type`: a request-rate 429 is `requests` (its token limits say `tokens`)."""
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(
    message: str,
    status: int,
    *,
    param: str | None,
    code: str | None,
    path: str,
    request_id: str,
    now: datetime,
) -> dict[str, Any]:
    """OpenAI's `error` object, with AIML's flat fields alongside so either client parses it."""
    return {
        "error": {"message": message, "type": error_type(status), "param": param, "code": code},
        "message": message,
        "statusCode": status,
        "path": path,
        "requestId": request_id,
        "timestamp": iso_ms(now),
    }


def snake_case(code: str) -> str:
    """easel's camelCase codes of refusals made before any route runs, as OpenAI spells
    codes: notFound -> not_found."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower()


# -- streaming (`stream: true`): OpenAI's image generation events ------------------------------

PARTIAL_EVENT = "image_generation.partial_image"
COMPLETED_EVENT = "image_generation.completed"


def stream_event(kind: str, job: Job, data: bytes, **fields: Any) -> str:
    """One server-sent event as the openai SDK parses it: the `type` inside `data` decides
    its class (the `event:` line is for readers)."""
    request = job.request
    body = {"type": kind, "b64_json": b64(data), "created_at": int(time.time()),
            "size": f"{request.width}x{request.height}",
            "quality": TIER_QUALITY.get(request.tier) or "auto", "background": "opaque",
            "output_format": request.output_format.value, **fields}
    return f"event: {kind}\ndata: {json.dumps(body)}\n\n"


def completed_usage() -> dict[str, Any]:
    """The `usage` a completed event carries; easel counts no tokens (its price is per
    image), so every count is 0."""
    return {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
            "output_tokens": 0, "total_tokens": 0}


def stream_error(err: EaselError) -> str:
    """A failure after the stream began: a data object with `error`, which the openai SDK
    raises as APIError with its message."""
    status = ERRORS.status(err)
    body = {"type": "error", "error": {"message": err.message, "type": error_type(status),
                                       "param": err.parameter, "code": ERRORS.code(err.kind)}}
    return f"event: error\ndata: {json.dumps(body)}\n\n"


def stream_bytes(submission: Submission) -> int:
    """What a stream will send, estimated before the job exists (its size is the catalog's
    nearest): every image and partial image as base64, 3 bytes a pixel for PNG (noise-like
    pictures compress little), 1 for JPEG and WebP."""
    generation = submission.generation
    size = generation.size
    if isinstance(size, NearestSize | ExactSize):
        pixels = size.width * size.height
    else:
        two_k = isinstance(size, AspectRatioSize) and size.resolution.lower() == "2k"
        pixels = (4 if two_k else 1) * 1024 * 1024
    per_pixel = 3 if generation.output_format is ImageFormat.PNG else 1
    return pixels * per_pixel * 4 // 3 * generation.num_images * (generation.partial_images + 1)
