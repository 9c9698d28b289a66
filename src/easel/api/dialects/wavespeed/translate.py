"""WaveSpeed v3 <-> core. Pure functions: wire body -> GenerationRequest, Job -> `data` object,
EaselError -> HTTP error or failed task (protocols.md §2.3, §7, §10.4)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from easel.api.dialects.common import (
    ErrorTable,
    ImageSource,
    all_withheld,
    b64,
    base64_bytes,
    delivered_images,
    iso_ms,
    validate_wire,
)
from easel.api.dialects.wavespeed.schemas import MAX_SEED, GoogleEditInput, ImagenInput
from easel.api.dialects.wavespeed.signing import v3_headers
from easel.api.limits import HTTPRefusal
from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind, UrlRefused
from easel.domain.job import Job, JobStatus, job_id_from
from easel.domain.request import ImageFormat
from easel.domain.safety import OnFlagged, SafetyInput, SafetyLevel
from easel.domain.submission import (
    AspectRatioSize,
    Caller,
    DeliverySettings,
    GenerationInput,
    ImageInput,
    ImagesIn,
    ModelChoice,
    Submission,
    WireNames,
    size_asked,
)

DIALECT = "wavespeed"
PROVIDER = "wavespeed"

STATUS = {
    JobStatus.QUEUED: "created",
    JobStatus.PROCESSING: "processing",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}

# Task-level codes in `data.code` (protocols.md §2.3); 0 = ok.
CODE_MISSING = 1400
CODE_INVALID = 1401
CODE_MODERATION = 1200
CODE_EXECUTION = 1403
CODE_CANCELLED = 1405
CODE_INTERNAL = 5000
CODE_UNAVAILABLE = 5003
CODE_TIMEOUT = 5004

# The task code of each kind of failure (`data.code`); the HTTP-level errors use the statuses.
ERRORS = ErrorTable({
    ErrorKind.INVALID: str(CODE_INVALID),
    ErrorKind.MISSING: str(CODE_MISSING),
    ErrorKind.UNSUPPORTED: str(CODE_INVALID),
    ErrorKind.UNKNOWN_MODEL: str(CODE_INVALID),
    ErrorKind.NOT_FOUND: str(CODE_INVALID),
    ErrorKind.CONFLICT: str(CODE_INVALID),
    ErrorKind.RATE_LIMITED: str(CODE_UNAVAILABLE),
    ErrorKind.UNAVAILABLE: str(CODE_UNAVAILABLE),
    ErrorKind.TIMEOUT: str(CODE_TIMEOUT),
    ErrorKind.CANCELLED: str(CODE_CANCELLED),
    ErrorKind.WORKER_LOST: str(CODE_EXECUTION),
    ErrorKind.CONTENT_BLOCKED: str(CODE_MODERATION),
    ErrorKind.INFERENCE: str(CODE_EXECUTION),
    ErrorKind.INTERNAL: str(CODE_INTERNAL),
    ErrorKind.UNAUTHENTICATED: "401",
})

# Refusals that become failed tasks (HTTP 200, status failed): the caller's own mistakes.
REFUSED_AS_TASK = {ErrorKind.MISSING, ErrorKind.INVALID, ErrorKind.UNSUPPORTED,
                   ErrorKind.CONTENT_BLOCKED}  # a blocked prompt: failed, data.code 1200

REFUSAL_PREFIX = "rf-"
NAMES = WireNames({"steps": "num_inference_steps"})
WEBHOOK_WITH_BASE64 = ("webhook callback does not support base64 output; set "
                       "enable_base64_output to false, or leave out the webhook")


@dataclass(frozen=True)
class WaveSpeedCall:
    submission: Submission
    input: dict[str, Any]  # the fully resolved input, echoed in data.input
    sync: bool
    ignored: list[str]  # documented fields this model has no use for (x-easel-ignored-fields)


def to_submission(
    model_id: str, body: dict[str, Any], webhook: str | None, caller: Caller,
    takes_negative_prompt: bool = True,
) -> WaveSpeedCall:
    """`takes_negative_prompt`: whether the model uses one. WaveSpeed documents
    `negative_prompt` on every Imagen 4 model, Fast included; where easel's backend has no use
    for it, it is reported ignored rather than failing the task."""
    if is_edit_model(model_id):
        return edit_submission(model_id, body, webhook, caller)
    wire = validate_wire(ImagenInput, body)
    ignored = [] if takes_negative_prompt or not wire.negative_prompt else ["negative_prompt"]
    target = _webhook(webhook, wire.webhook_url, wire.enable_base64_output)
    unset = {name for name in ("num_inference_steps", "guidance_scale")
             if getattr(wire, name) is None}
    resolved = wire.model_dump(exclude={"webhook_url", *unset})
    generation = GenerationInput(
        model=ModelChoice(model_id, provider=PROVIDER),
        prompt=wire.prompt,
        size=AspectRatioSize(wire.aspect_ratio, wire.resolution),
        num_images=wire.num_images,
        negative_prompt=(wire.negative_prompt or None) if not ignored else None,
        seed=None if wire.seed == -1 else wire.seed,
        output_format=ImageFormat(wire.output_format),
        steps=wire.num_inference_steps,
        guidance_scale=wire.guidance_scale,
        max_seed=MAX_SEED,
        # WaveSpeed checks every output and flags it in has_nsfw_contents; it does not withhold.
        safety=SafetyInput(SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, OnFlagged.FLAG)
        if wire.enable_safety_checker else SafetyInput(),
    )
    names = NAMES.with_(webhook="webhook" if webhook is not None else "webhook_url")
    submission = Submission(DIALECT, caller, generation, DeliverySettings(webhook=target),
                            names=names, echo={"wavespeed_input": resolved})
    return WaveSpeedCall(submission, resolved, wire.enable_sync_mode, ignored)


EDIT_SUFFIXES = ("/edit", "/edit-fast")


def is_edit_model(model_id: str) -> bool:
    """WaveSpeed's Google edit ids end in /edit (or /edit-fast): their bodies carry images."""
    return model_id.endswith(EDIT_SUFFIXES)


def edit_submission(model_id: str, body: dict[str, Any], webhook: str | None,
                    caller: Caller) -> WaveSpeedCall:
    """An edit by instruction of `images`: Fast is shown them all, the other tiers redraw one;
    with no aspect_ratio, the first image's shape."""
    wire = validate_wire(GoogleEditInput, body)
    target = _webhook(webhook, wire.webhook_url, wire.enable_base64_output)
    first, *more = (ImageInput(f"images[{i}]", text=image) for i, image in enumerate(wire.images))
    resolved = {**wire.model_dump(exclude={"webhook_url"}), "images": shown_images(wire.images)}
    generation = GenerationInput(
        model=ModelChoice(model_id, provider=PROVIDER), prompt=wire.prompt,
        size=size_asked(wire.aspect_ratio or "1:1", wire.resolution, from_image=True,
                        ratio_sent=wire.aspect_ratio is not None,
                        resolution_sent="resolution" in wire.model_fields_set),
        num_images=wire.num_images, seed=None if wire.seed == -1 else wire.seed,
        output_format=ImageFormat(wire.output_format), max_seed=MAX_SEED,
        safety=SafetyInput(SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, OnFlagged.FLAG)
        if wire.enable_safety_checker else SafetyInput(),
        images_in=ImagesIn(first, instruction=True, references=tuple(more)),
    )
    names = NAMES.with_(webhook="webhook" if webhook is not None else "webhook_url",
                        image="images[0]")
    submission = Submission(DIALECT, caller, generation, DeliverySettings(webhook=target),
                            names=names, echo={"wavespeed_input": resolved})
    return WaveSpeedCall(submission, resolved, wire.enable_sync_mode, [])


def shown_images(images: list[str]) -> list[str]:
    """The images as data.input echoes them, in every poll and the webhook: a URL as sent, an
    image sent inline (data URI or base64, up to tens of megabytes) by its length alone, as
    WaveSpeed's own echo carries URLs, never the bytes."""
    return [image if image.startswith(("http://", "https://")) else
            f"(an image sent inline, {len(image)} characters)" for image in images]


def _webhook(webhook: str | None, webhook_url: str | None, base64: bool) -> str | None:
    if webhook is not None and webhook_url is not None and webhook != webhook_url:
        raise EaselError(ErrorKind.INVALID, "the webhook query parameter and webhook_url "
                         "disagree; give one of them", "webhook_url")
    target = webhook if webhook is not None else webhook_url
    if target is not None and base64:
        raise HTTPRefusal(400, "invalidParameter", WEBHOOK_WITH_BASE64, "enable_base64_output")
    return target


def result_url(base_url: str, prediction_id: str) -> str:
    return f"{base_url.rstrip('/')}/api/v3/predictions/{prediction_id}/result"


def prediction_id(job: Job) -> str:
    """WaveSpeed ids are 32 hexadecimal digits: a job's UUID without its dashes."""
    try:
        return uuid.UUID(job.id).hex
    except ValueError:
        return job.id


def job_id_of(prediction: str) -> str:
    """The job a prediction id names (32 hex digits, or the dashed form easel also accepts)."""
    return job_id_from(prediction)


def task_code(job: Job) -> int:
    return int(ERRORS.code(job.error or ErrorKind.INTERNAL))


def inference_ms(job: Job) -> int:
    if job.started_at is None or job.finished_at is None:
        return 0
    return max(0, round((job.finished_at - job.started_at).total_seconds() * 1000))


def wants_base64(job: Job) -> bool:
    return bool(job.echo.get("wavespeed_input", {}).get("enable_base64_output", False))


def base64_reply_bytes(job: Job) -> int:
    """The base64 a reply on `job` carries (0 when its outputs are URLs)."""
    if job.status is not JobStatus.COMPLETED or not wants_base64(job):
        return 0
    return base64_bytes(delivered_images(job))


async def outputs(job: Job, images: ImageSource) -> list[str]:
    """URLs, or with enable_base64_output the bare base64 of each file (no `data:` prefix:
    WaveSpeed's docs say to decode the whole string as is). Completed jobs only."""
    if job.status is not JobStatus.COMPLETED:
        return []
    if not wants_base64(job):
        return [images.image_url(job, image) for image in delivered_images(job)]
    return [b64(await images.image_bytes(image)) for image in delivered_images(job)]


def job_data(job: Job, base_url: str, outputs: list[str]) -> dict[str, Any]:
    completed = job.status is JobStatus.COMPLETED
    # WaveSpeed itself only flags; when the operator's content check floor withheld every
    # image, the task fails as a moderated one does (data.code 1200).
    blocked = all_withheld(job) if completed else None
    shown_id = prediction_id(job)
    data: dict[str, Any] = {
        "id": shown_id,
        "model": job.request.model,
        "input": job.echo.get("wavespeed_input") or _input_of(job),
        "outputs": outputs,
        "urls": {"get": result_url(base_url, shown_id)},
        "has_nsfw_contents": [i.nsfw for i in delivered_images(job)] if completed else [],
        "status": "failed" if blocked else STATUS[job.status],
        "created_at": iso_ms(job.created_at),
        "error": (job.error_message or "") if job.error is not None else "",
        "timings": {"inference": inference_ms(job)},
    }
    data["code"] = task_code(job) if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else 0
    if blocked is not None:
        data["error"], data["code"] = blocked.message, CODE_MODERATION
    return data


def sync_timeout_data(data: dict[str, Any], waited_s: float) -> dict[str, Any]:
    """The reply when sync mode's hold expires: the SDK tells its user to poll the id."""
    return {
        **data,
        "status": "processing",
        "code": CODE_TIMEOUT,
        "error": f"Sync mode timed out after {waited_s:g}s; the task is still running, "
        f"poll {data['urls']['get']}",
    }


def _input_of(job: Job) -> dict[str, Any]:
    """A job submitted through another dialect, described in WaveSpeed's terms."""
    r = job.request
    return {
        "prompt": r.prompt,
        "negative_prompt": r.negative_prompt or "",
        "size": f"{r.width}*{r.height}",
        "num_images": r.num_images,
        "seed": -1 if r.seed is None else r.seed,
        "output_format": r.output_format.value,
    }


async def webhook_body(job: Job, _image_id: str | None, images: ImageSource) -> dict[str, Any]:
    """The webhook POST: the bare `data` object, on completed, failed and cancelled."""
    return job_data(job, images.base_url, await outputs(job, images))


WEBHOOK_PURPOSE = "wavespeed-webhook"
REFUSAL_PURPOSE = "wavespeed-refusal"


class RefusalSeal:
    """Seals the refusal a failed task's id carries, for the caller it was refused to: encrypted
    (the id travels in URLs and access logs; the prompt in it is not for them) and
    authenticated (only this server made it, and only that caller's key reads it back: any
    other poll finds no such prediction). `key`: 32 bytes the server derives for the caller."""

    NONCE = 12

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key[:32])

    def seal(self, packed: bytes) -> bytes:
        nonce = os.urandom(self.NONCE)
        return nonce + self._aead.encrypt(nonce, packed, None)

    def open(self, sealed: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(sealed[:self.NONCE], sealed[self.NONCE:], None)
        except (InvalidTag, ValueError):
            return None


def secret_text(key: bytes) -> str:
    """A caller's webhook secret as WaveSpeed shows it: whsec_ and 48 hex digits."""
    return "whsec_" + key.hex()[:48]


def caller_secret(root: str, principal: str) -> str:
    """The webhook secret of one caller (WaveSpeed keeps one per account), derived from the
    server's signing root so nothing per caller is stored: `GET /api/v3/webhook/secret`
    (there through Port.webhook_key, which derives it the same way)."""
    return secret_text(hmac.new(root.encode(), WEBHOOK_PURPOSE.encode() + b"\n"
                                + principal.encode(), hashlib.sha256).digest())


def sign_webhook(root: str, principal: str, message_id: str, body: bytes) -> dict[str, str]:
    """WaveSpeed's signature: `webhook-signature: v3,<hex>`, HMAC-SHA256 over
    `{webhook-id}.{webhook-timestamp}.{body}` keyed with the caller's secret minus its
    `whsec_` prefix (the text itself, not base64-decoded)."""
    return v3_headers(caller_secret(root, principal), message_id, body)


def model_list(catalog: Catalog) -> list[dict[str, Any]]:
    # An edit model's body must carry images: listed as WaveSpeed lists its image-to-image ids.
    return [
        {"model_id": m.id, "name": m.tier.label,
         "type": "image-to-image" if is_edit_model(m.id) else "text-to-image",
         "base_price": m.price_usd, "description": f"served by easel on {m.backend.source}"}
        for m in sorted(catalog.models_for(PROVIDER), key=lambda m: m.id)
    ]


def envelope(data: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def error_body(status: int, message: str) -> dict[str, Any]:
    """HTTP-level errors (auth, unknown id, overload): `{code, message}` with that status, and
    `error` as WaveSpeed's own refusals spell it (clients read either)."""
    return {"code": status, "message": message, "error": message, "data": None}


def is_refused_as_task(err: EaselError) -> bool:
    # A body refused at the HTTP level (413, 415, 408) was never read as a task; a
    # webhook target the SSRF policy refuses is an HTTP 400, never a queued task.
    return err.kind in REFUSED_AS_TASK and not isinstance(err, HTTPRefusal | UrlRefused)


# A request refused at the edge is answered as a failed task (HTTP 200, status failed,
# data.code 1400/1401) because the SDK ignores the submit reply's status and always polls
# /result (protocols.md §10.4). No job exists for it, so the id itself carries the refusal
# (compressed, URL-safe): the poll decodes it and the dialect stays stateless.


MAX_REFUSAL_ID = 2048  # longer ids are not read at all


def refusal_input(body: dict[str, Any] | None) -> dict[str, Any]:
    """A refused request's input as far as it resolves: each documented field as sent, else
    its default (as a task's `input` echoes it); unknown fields and the webhook left out."""
    sent = body or {}
    resolved: dict[str, Any] = {}
    for name, field in ImagenInput.model_fields.items():
        if name == "webhook_url":
            continue
        if name in sent:
            resolved[name] = _printable(sent[name])
        elif not field.is_required() and field.default is not None:
            resolved[name] = field.default
    return resolved


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(value: Any) -> Any:
    """A value as it can be echoed in JSON: lone surrogates (refused as input, but JSON can
    carry them) shown as U+FFFD; NaN and Infinity, which Python's parser reads but JSON cannot
    carry, as text."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value


def refusal_data(
    model_id: str, err: EaselError, created_at: datetime, base_url: str, seal: RefusalSeal,
    sent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The failed task of a refused request, under an id that carries the refusal (and the
    input, when the id stays under MAX_REFUSAL_ID; polls of a larger one echo `{}`)."""
    code = int(ERRORS.code(err.kind))  # 1400 missing, 1401 invalid, 1200 moderation
    refusal = {"m": model_id[:200], "c": code, "e": err.message[:500], "p": err.parameter,
               "t": iso_ms(created_at)}
    resolved = refusal_input(sent)
    job_id = _refusal_id({**refusal, "i": resolved}, seal)
    if len(job_id) > MAX_REFUSAL_ID:
        job_id = _refusal_id(refusal, seal)
    return {**_refusal(job_id, refusal, base_url), "input": resolved}


def _refusal_id(refusal: dict[str, Any], seal: RefusalSeal) -> str:
    packed = zlib.compress(json.dumps(refusal, separators=(",", ":")).encode(), 9)
    return REFUSAL_PREFIX + _b64(seal.seal(packed))


def decode_refusal(job_id: str, base_url: str, seal: RefusalSeal) -> dict[str, Any] | None:
    """The refusal an id carries, when this server sealed it for this caller; None for anything
    else (a forged or oversized id, or another caller's, is simply not found)."""
    if not job_id.startswith(REFUSAL_PREFIX) or len(job_id) > MAX_REFUSAL_ID:
        return None
    try:
        packed = seal.open(_unb64(job_id[len(REFUSAL_PREFIX):]))
        if packed is None:
            return None
        refusal = json.loads(zlib.decompress(packed, bufsize=4096))
    except (binascii.Error, zlib.error, ValueError, RecursionError):
        return None
    if not isinstance(refusal, dict) or not {"m", "c", "e", "t"} <= refusal.keys():
        return None
    return _refusal(job_id, refusal, base_url)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _refusal(job_id: str, refusal: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "model": refusal["m"],
        "input": refusal["i"] if isinstance(refusal.get("i"), dict) else {},
        "outputs": [],
        "urls": {"get": result_url(base_url, job_id)},
        "has_nsfw_contents": [],
        "status": "failed",
        "created_at": refusal["t"],
        "error": refusal["e"],
        "code": refusal["c"],
        "timings": {"inference": 0},
    }
