"""Runware <-> core: tasks to GenerationRequests, jobs to result items, errors to Runware codes."""

from __future__ import annotations

import re
from typing import Any

from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobStatus
from easel.domain.request import GenerationRequest
from easel.services.jobs import JobService
from easel.store.outbox import UPLOAD, Delivery

from .schemas import IMAGE_FIELDS, ImageInference, RunwareError

TASK_TYPE = "imageInference"

# Core parameter names (diffusers style) -> Runware's names.
WIRE_NAMES = {
    "prompt": "positivePrompt", "negative_prompt": "negativePrompt",
    "num_images": "numberResults", "output_quality": "outputQuality", "model": "model",
    "seed": "seed", "taskUUID": "taskUUID", "width": "width", "height": "height",
}

# ErrorKind -> (code, HTTP status); invalid/missing/unsupported codes are built per parameter.
FIXED_CODES = {
    ErrorKind.UNKNOWN_MODEL: ("unknownModel", 400),
    ErrorKind.CONFLICT: ("conflictTaskUUID", 409),
    ErrorKind.AUTH: ("invalidApiKey", 401),
    ErrorKind.NOT_FOUND: ("taskNotFound", 404),
    ErrorKind.RATE_LIMITED: ("rateLimitExceeded", 429),
    ErrorKind.UNAVAILABLE: ("modelUnavailable", 503),
    ErrorKind.CANCELLED: ("taskCancelled", 400),
    ErrorKind.INFERENCE: ("inferenceError", 500),
}
PREFIXES = {ErrorKind.INVALID: "invalid", ErrorKind.MISSING: "missing",
            ErrorKind.UNSUPPORTED: "unsupported"}


def to_request(task: ImageInference, catalog: Catalog) -> tuple[GenerationRequest, dict[str, Any]]:
    """The core request and the options only Runware needs back (output fields, ttl, cost)."""
    width, height = task.width, task.height
    if width is None or height is None:
        width, height = _default_size(task.model, catalog)
    else:
        _check_size(task.model, width, height, catalog)
    request = GenerationRequest(
        model=task.model, prompt=task.positive_prompt, width=width, height=height,
        num_images=task.number_results, negative_prompt=task.negative_prompt, seed=task.seed,
        output_format=task.output_format, output_quality=task.output_quality,
    )
    options: dict[str, Any] = {
        "outputType": list(task.output_types), "includeCost": task.include_cost,
        "deliveryMethod": task.delivery_method, "ttl": task.ttl, "safety": task.safety,
        "providerSettings": task.provider_settings,
    }
    # Neutral delivery options (store/outbox.py): Runware posts each finished image on its own.
    if task.webhook_url is not None:
        options.update(webhook=task.webhook_url, webhook_per_image=True)
    if task.upload_endpoint is not None:
        options["upload"] = task.upload_endpoint
    return request, options


def _default_size(model_id: str, catalog: Catalog) -> tuple[int, int]:
    try:
        size = catalog.model(model_id).size_for("1:1", "1k")
    except EaselError as exc:
        raise from_easel(exc) from None
    return size.width, size.height


def _check_size(model_id: str, width: int, height: int, catalog: Catalog) -> None:
    """Runware names width or height, not a "size": say which one is off."""
    try:
        model = catalog.model(model_id)
        model.check_size(width, height)
    except EaselError as exc:
        if exc.parameter != "size":
            raise from_easel(exc) from None
        widths = {s.width for s in model.sizes}
        name = "width" if width not in widths else "height"
        raise RunwareError(f"invalid{name.title()}", exc.message, name) from None


def from_easel(exc: EaselError) -> RunwareError:
    parameter = WIRE_NAMES.get(exc.parameter or "", exc.parameter)
    message = exc.message
    if exc.parameter and parameter and parameter != exc.parameter:
        message = re.sub(rf"\b{re.escape(exc.parameter)}\b", parameter, message)
    if exc.kind in PREFIXES:
        name = parameter or "parameter"
        return RunwareError(f"{PREFIXES[exc.kind]}{name[:1].upper()}{name[1:]}", message, parameter)
    code, status = FIXED_CODES.get(exc.kind, ("internalServerError", 500))
    return RunwareError(code, message, parameter, status=status)


def job_error(job: Job) -> RunwareError:
    kind = ErrorKind(job.error_code) if job.error_code in set(ErrorKind) else ErrorKind.INFERENCE
    code, status = FIXED_CODES.get(kind, ("inferenceError", 500))
    return RunwareError(code, job.error_message or "the task failed", status=status,
                        task_type=TASK_TYPE, task_uuid=job.id)


def ack(job: Job) -> dict[str, Any]:
    """The async acknowledgement: no imageUUID, no status (runware 0.5.24 would take it for
    the results)."""
    return {"taskType": TASK_TYPE, "taskUUID": job.id}


async def result_items(job: Job, jobs: JobService, with_status: bool) -> list[dict[str, Any]]:
    """One item per image of a completed job."""
    output_types = job.options.get("outputType") or ["URL"]
    per_image_cost = round(job.cost_usd / max(len(job.images), 1), 6)
    items = []
    for image in job.images:
        item: dict[str, Any] = {"taskType": TASK_TYPE, "taskUUID": job.id,
                                "imageUUID": image.image_id}
        if with_status:
            item["status"] = "success"
        for output_type in output_types:
            item[IMAGE_FIELDS[output_type]] = await _image_field(output_type, job, image, jobs)
        item["seed"] = image.seed
        item["NSFWContent"] = image.nsfw
        if job.options.get("includeCost"):
            item["cost"] = per_image_cost
        items.append(item)
    return items


async def _image_field(output_type: str, job: Job, image: Any, jobs: JobService) -> str:
    if output_type == "URL":
        return jobs.image_url(job, image)
    if output_type == "base64Data":
        return await jobs.image_base64(image)
    return await jobs.image_data_uri(image)


async def webhook_body(job: Job, image_id: str | None, jobs: JobService) -> dict[str, Any]:
    """One webhook POST: a finished image in the sync reply's envelope, or the task's error."""
    if job.status is not JobStatus.COMPLETED:
        return {"errors": [job_error(job).to_dict()]}
    items = await result_items(job, jobs, with_status=False)
    return {"data": [item for item in items if item["imageUUID"] == image_id] or items}


def report_delivery_failures(items: list[dict[str, Any]], failures: list[Delivery]) -> None:
    """A finally failed uploadEndpoint PUT (or webhook) shows in the task's result items; the
    images themselves stay retrievable."""
    for failure in failures:
        field = "uploadEndpointError" if failure.kind == UPLOAD else "webhookError"
        for item in items:
            if not failure.image_id or item.get("imageUUID") == failure.image_id:
                item[field] = failure.last_error or "delivery failed"


def pending_items(job: Job) -> list[dict[str, Any]]:
    """Processing items carry their (stable) imageUUID and nothing ending in URL/Base64Data."""
    return [
        {"taskType": TASK_TYPE, "taskUUID": job.id, "imageUUID": image.image_id,
         "status": "processing"}
        for image in job.images
    ]


async def poll_items(job: Job, jobs: JobService) -> list[dict[str, Any]]:
    """getResponse: every image of the task; all turn success together, when the job completes."""
    if job.status is JobStatus.COMPLETED:
        return await result_items(job, jobs, with_status=True)
    return pending_items(job)
