"""Helpers every dialect shares: reading a JSON body, validating wire models with one clear
message that names the parameter, credentials, and the header that lists ignored fields.

Nothing here holds state or knows a size, a limit or a price (those live in the catalog)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from easel.api.auth import bearer_token as auth_bearer
from easel.api.limits import BodyTooLarge, read_body
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job, JobImage

M = TypeVar("M", bound=BaseModel)

# Names the fields easel accepted but cannot honour (e.g. a watermark it never draws), so a
# client is told instead of the field being dropped quietly. Also written into docs per dialect.
IGNORED_HEADER = "x-easel-ignored-fields"

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.MISSING: 400,
    ErrorKind.UNSUPPORTED: 400,
    ErrorKind.UNKNOWN_MODEL: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.AUTH: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.CANCELLED: 500,
    ErrorKind.INFERENCE: 500,
}


def http_status(kind: ErrorKind | str) -> int:
    try:
        return STATUS_BY_KIND[ErrorKind(kind)]
    except ValueError:
        return 500


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    if not raw.strip():
        raise EaselError(ErrorKind.MISSING, "the request body must be a JSON object", "body")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid("body", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid("body", "the request body must be a JSON object")
    return data


class PayloadTooLarge(EaselError):
    """A body over the server's limit; dialects answer it with HTTP 413."""

    status = 413

    def __init__(self, limit: int) -> None:
        message = f"the request body is larger than {limit} bytes"
        super().__init__(ErrorKind.INVALID, message, "body")


def status_of(err: EaselError) -> int:
    return PayloadTooLarge.status if isinstance(err, PayloadTooLarge) else http_status(err.kind)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as one JSON object, refused as soon as it passes `limit` bytes."""
    try:
        raw = await read_body(request, limit)
    except BodyTooLarge:
        raise PayloadTooLarge(limit) from None
    return parse_json_object(raw)


def validate_wire(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    """Validate a wire body against its pydantic model; the first problem becomes one
    EaselError naming the parameter as the client spelled it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise wire_error(exc, prefix) from None


def wire_error(exc: ValidationError, prefix: str = "") -> EaselError:
    err = exc.errors()[0]
    parts = [prefix] if prefix else []
    for item in err["loc"]:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    parameter = ".".join(parts) or "body"
    etype = err["type"]
    if etype == "missing":
        return EaselError(ErrorKind.MISSING, f"{parameter} is required", parameter)
    if etype == "extra_forbidden":
        return EaselError(
            ErrorKind.UNSUPPORTED, f"{parameter} is not a parameter easel accepts here", parameter
        )
    got = err.get("input")
    shown = json.dumps(got)[:80] if _jsonable(got) else repr(got)[:80]
    return invalid(parameter, f"{parameter}: {err['msg']}, got {shown}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def bearer_token(request: Request) -> str | None:
    return auth_bearer(request.headers.get("authorization"))


def iso_ms(moment: datetime) -> str:
    """2026-08-25T00:49:21.479Z"""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ignored_header(ignored: list[str]) -> dict[str, str]:
    return {IGNORED_HEADER: ", ".join(ignored)} if ignored else {}


class ImageSource(Protocol):
    """The part of the jobs service a dialect needs to hand images out."""

    def image_url(self, job: Job, image: JobImage) -> str: ...

    async def image_bytes(self, image: JobImage) -> bytes: ...


def ordered_images(job: Job) -> list[JobImage]:
    return sorted(job.images, key=lambda image: image.index)


def check_webhook(url: str, parameter: str) -> str:
    """Webhook targets are accepted and validated here; delivery is the delivery service's."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise invalid(parameter, f"{parameter} must be an absolute http(s) URL, got {url[:200]!r}")
    return url
