"""Runware's wire format: task parsing with one clear error per problem, and the error shape.

Only Runware's own wire rules live here (field types, enums, outputQuality 20..99, ttl >= 60).
Sizes, prompt limits, image counts and prices belong to the catalog and are checked there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from easel.domain.errors import EaselError, ErrorKind
from easel.domain.request import ImageFormat

DOCS = "https://runware.ai/docs/en/image-inference/api-reference"

IMAGE_FIELDS = {"URL": "imageURL", "base64Data": "imageBase64Data", "dataURI": "imageDataURI"}
OUTPUT_FORMATS = {"JPG": ImageFormat.JPEG, "JPEG": ImageFormat.JPEG, "PNG": ImageFormat.PNG,
                  "WEBP": ImageFormat.WEBP}
DELIVERY_METHODS = ("sync", "async")
SAFETY_MODES = ("none", "fast", "full")
MIN_TTL = 60
QUALITY_RANGE = (20, 99)

# Fields of imageInference easel reads. Anything else is refused by name rather than dropped.
KNOWN_FIELDS = frozenset({
    "taskType", "taskUUID", "model", "positivePrompt", "negativePrompt", "width", "height",
    "numberResults", "outputType", "outputFormat", "outputQuality", "deliveryMethod", "ttl",
    "includeCost", "seed", "safety", "checkNSFW", "checkNsfw", "webhookURL", "uploadEndpoint",
    "providerSettings", "steps", "CFGScale", "scheduler",
})


class RunwareError(EaselError):
    """One entry of Runware's `errors` array, with the HTTP status a REST reply should carry.
    An EaselError, so one raised for a whole request is rendered by the dialect's renderer."""

    def __init__(
        self,
        code: str,
        message: str,
        parameter: str | None = None,
        *,
        status: int = 400,
        task_type: str | None = None,
        task_uuid: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(ErrorKind.INVALID, message, parameter)
        self.retry_after = retry_after  # seconds, when the refusal says when to come back
        self.code = code
        self.message = message
        self.parameter = parameter
        self.status = status
        self.task_type = task_type
        self.task_uuid = task_uuid

    def for_task(self, task_type: str | None, task_uuid: str | None) -> RunwareError:
        self.task_type = self.task_type or task_type
        self.task_uuid = self.task_uuid or task_uuid
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            out["parameter"] = self.parameter
        if self.task_type is not None:
            out["taskType"] = self.task_type
        if self.task_uuid is not None:
            out["taskUUID"] = self.task_uuid
        out["documentation"] = DOCS
        return out


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def missing(name: str) -> RunwareError:
    return RunwareError(f"missing{_cap(name)}", f"{name} is required", name)


def wrong(name: str, message: str) -> RunwareError:
    return RunwareError(f"invalid{_cap(name)}", message, name)


@dataclass(frozen=True)
class ImageInference:
    task_uuid: str
    model: str
    positive_prompt: str
    negative_prompt: str | None
    width: int | None
    height: int | None
    number_results: int
    output_types: tuple[str, ...]
    output_format: ImageFormat
    output_quality: int
    delivery_method: str
    ttl: int | None
    include_cost: bool
    seed: int | None
    safety: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    upload_endpoint: str | None = None
    provider_settings: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    cfg_scale: float | None = None
    scheduler: str | None = None


def task_uuid(task: dict[str, Any]) -> str:
    value = task.get("taskUUID")
    if value is None:
        raise missing("taskUUID")
    if not isinstance(value, str):
        raise wrong("taskUUID", "taskUUID must be a UUID string")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise wrong("taskUUID", f"taskUUID {value[:64]!r} is not a valid UUID") from None
    if str(parsed) != value.lower():
        raise wrong("taskUUID", "taskUUID must be written as 8-4-4-4-12 hexadecimal digits")
    return value


def parse_image_inference(task: dict[str, Any]) -> ImageInference:
    uuid_ = task_uuid(task)
    unknown = sorted(set(task) - KNOWN_FIELDS)
    if unknown:
        raise RunwareError(
            "unsupportedParameter",
            f"imageInference does not support {unknown[0]!r} for these models",
            unknown[0],
        )
    output_types = _output_types(task.get("outputType", "URL"))
    ttl = _opt_int(task, "ttl")
    if ttl is not None and ttl < MIN_TTL:
        raise wrong("ttl", f"ttl must be at least {MIN_TTL} seconds, got {ttl}")
    if ttl is not None and "URL" not in output_types:
        raise wrong("ttl", "ttl applies to URL outputs only (outputType URL)")
    width, height = _opt_int(task, "width"), _opt_int(task, "height")
    if (width is None) != (height is None):
        raise missing("height" if height is None else "width")
    quality = _opt_int(task, "outputQuality")
    if quality is not None and not QUALITY_RANGE[0] <= quality <= QUALITY_RANGE[1]:
        raise wrong("outputQuality", f"outputQuality must be 20..99, got {quality}")
    number = _opt_int(task, "numberResults")
    return ImageInference(
        task_uuid=uuid_,
        model=_req_str(task, "model"),
        positive_prompt=_req_str(task, "positivePrompt"),
        negative_prompt=_opt_str(task, "negativePrompt"),
        width=width,
        height=height,
        number_results=1 if number is None else number,
        output_types=output_types,
        output_format=_output_format(task.get("outputFormat", "JPG")),
        output_quality=95 if quality is None else quality,
        delivery_method=_choice(task, "deliveryMethod", DELIVERY_METHODS, "sync"),
        ttl=ttl,
        include_cost=_opt_bool(task, "includeCost") or False,
        seed=_opt_int(task, "seed"),
        safety=_safety(task),
        webhook_url=_url(task, "webhookURL"),
        upload_endpoint=_url(task, "uploadEndpoint"),
        provider_settings=_object(task, "providerSettings"),
        steps=_opt_int(task, "steps"),
        cfg_scale=_opt_float(task, "CFGScale"),
        scheduler=_opt_str(task, "scheduler"),
    )


def _req_str(task: dict[str, Any], name: str) -> str:
    value = task.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, str):
        raise wrong(name, f"{name} must be a string, got {type(value).__name__}")
    return value


def _opt_str(task: dict[str, Any], name: str) -> str | None:
    value = task.get(name)
    if value is not None and not isinstance(value, str):
        raise wrong(name, f"{name} must be a string, got {type(value).__name__}")
    return value


def _opt_int(task: dict[str, Any], name: str) -> int | None:
    value = task.get(name)
    if value is None:
        return None
    # JSON has one number type; 2.0 is accepted as 2, 2.5 and true are not integers.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong(name, f"{name} must be an integer, got {value!r}")
    return value


def _opt_float(task: dict[str, Any], name: str) -> float | None:
    value = task.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong(name, f"{name} must be a number, got {value!r}")
    return float(value)


def _opt_bool(task: dict[str, Any], name: str) -> bool | None:
    value = task.get(name)
    if value is not None and not isinstance(value, bool):
        raise wrong(name, f"{name} must be true or false, got {value!r}")
    return value


def _choice(task: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = task.get(name, default)
    if value not in allowed:
        raise RunwareError(
            f"unsupported{_cap(name)}",
            f"{name} must be one of {', '.join(allowed)}, got {value!r}", name,
        )
    return str(value)


def _output_types(value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or any(not isinstance(v, str) or v not in IMAGE_FIELDS for v in values):
        raise RunwareError(
            "unsupportedOutputType",
            f"outputType must be one of {', '.join(IMAGE_FIELDS)}, got {str(value)[:100]}",
            "outputType",
        )
    return tuple(dict.fromkeys(values))


def _output_format(value: Any) -> ImageFormat:
    if not isinstance(value, str) or value.upper() not in OUTPUT_FORMATS:
        raise RunwareError(
            "unsupportedOutputFormat", f"outputFormat must be JPG, PNG or WEBP, got {value!r}",
            "outputFormat",
        )
    return OUTPUT_FORMATS[value.upper()]


def _object(task: dict[str, Any], name: str) -> dict[str, Any]:
    value = task.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise wrong(name, f"{name} must be an object")
    return value


def _safety(task: dict[str, Any]) -> dict[str, Any]:
    """Runware's content check settings (docs/safety.md): checkContent and mode."""
    safety = dict(_object(task, "safety"))
    for legacy in ("checkNSFW", "checkNsfw"):
        if _opt_bool(task, legacy):
            safety.setdefault("checkContent", True)
    for key, value in safety.items():
        if key in ("checkContent", "checkInputs", "tolerance"):
            if not isinstance(value, bool):
                raise wrong("safety", f"safety.{key} must be true or false")
        elif key == "mode":
            if value not in SAFETY_MODES:
                raise wrong("safety", f"safety.mode must be one of {', '.join(SAFETY_MODES)}")
        else:
            raise wrong("safety", f"safety has no field {key!r}")
    return safety


def _url(task: dict[str, Any], name: str) -> str | None:
    """A string; whether it is an acceptable URL is the core's check
    (services/delivery/outbound.py)."""
    return _opt_str(task, name)
