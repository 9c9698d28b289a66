"""Runware <-> core: tasks to Submissions, jobs to result items, errors to Runware codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easel.api.dialects.common import (
    ErrorTable,
    ImageSource,
    all_withheld,
    base64_bytes,
    withheld_message,
)
from easel.api.limits import HTTPRefusal
from easel.catalog import Catalog, Model
from easel.domain.delivery import UPLOAD, Delivery
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobImage, JobStatus
from easel.domain.lora import Adapter
from easel.domain.safety import OnFlagged, SafetyInput, SafetyLevel
from easel.domain.submission import (
    Caller,
    DeliverySettings,
    ExactSize,
    GenerationInput,
    ImagesIn,
    ModelChoice,
    Submission,
    Upscale,
    WireNames,
)
from easel.services.port import BackendFacts, StoredUpload

from .schemas import (
    IMAGE_FIELDS,
    TASK_TYPE,
    ImageInference,
    ModelSearchTask,
    Output,
    RunwareError,
    Upscaling,
)

DIALECT = "runware"

# Core parameter names (diffusers style) -> Runware's names.
NAMES = WireNames({
    "prompt": "positivePrompt", "negative_prompt": "negativePrompt",
    "num_images": "numberResults", "output_quality": "outputQuality", "task_id": "taskUUID",
    "webhook": "webhookURL", "upload": "uploadEndpoint", "width": "width", "height": "height",
    "steps": "steps", "guidance_scale": "CFGScale", "scheduler": "scheduler", "loras": "lora",
    "image": "seedImage", "mask": "maskImage", "strength": "strength",
})

# Runware's code per kind; invalid/missing/unsupported codes are prefixes completed with the
# parameter's name (invalidWidth, missingPositivePrompt, ...).
PREFIXED = (ErrorKind.INVALID, ErrorKind.MISSING, ErrorKind.UNSUPPORTED)
ERRORS = ErrorTable(
    {
        ErrorKind.INVALID: "invalid",
        ErrorKind.MISSING: "missing",
        ErrorKind.UNSUPPORTED: "unsupported",
        ErrorKind.UNKNOWN_MODEL: "unknownModel",
        ErrorKind.NOT_FOUND: "taskNotFound",
        ErrorKind.CONFLICT: "conflictTaskUUID",
        ErrorKind.RATE_LIMITED: "rateLimitExceeded",
        ErrorKind.UNAVAILABLE: "modelUnavailable",
        ErrorKind.TIMEOUT: "timeoutProvider",
        ErrorKind.CANCELLED: "taskCancelled",
        ErrorKind.WORKER_LOST: "inferenceError",
        ErrorKind.CONTENT_BLOCKED: "contentPolicyViolation",
        ErrorKind.INFERENCE: "inferenceError",
        ErrorKind.INTERNAL: "internalServerError",
        ErrorKind.UNAUTHENTICATED: "invalidApiKey",
    },
    {ErrorKind.UNKNOWN_MODEL: 400, ErrorKind.CANCELLED: 400},
)


def to_submission(
    task: ImageInference, caller: Caller, raw: dict[str, Any] | None = None
) -> Submission:
    """The core's Submission; Runware's own output settings ride along in the echo, and the
    task as sent (getTaskDetails returns it)."""
    size = None if task.width is None or task.height is None else ExactSize(task.width,
                                                                           task.height)
    generation = GenerationInput(
        model=ModelChoice(task.model), prompt=task.positive_prompt, size=size,
        num_images=task.number_results, negative_prompt=task.negative_prompt, seed=task.seed,
        output_format=task.output.format, output_quality=task.output.quality,
        steps=task.steps, guidance_scale=task.cfg_scale, scheduler=task.scheduler,
        safety=safety_input(task.output.safety),
        enhance_prompt=enhance_prompt(task.provider_settings),
        loras=task.loras, images_in=task.images_in,
    )
    delivery, output = delivered(task.output)
    echo = {
        **output, "providerSettings": task.provider_settings,
        "_request": raw,  # as sent, for getTaskDetails (not compared for idempotency)
    }
    names = NAMES
    if task.images_in is not None:  # the names the client used (inputs.image, ...)
        mask = task.images_in.mask
        names = NAMES.with_(image=task.images_in.image.parameter,
                            **({"mask": mask.parameter} if mask is not None else {}))
    return Submission(DIALECT, caller, generation, delivery, task.task_uuid, names, echo)


def delivered(output: Output) -> tuple[DeliverySettings, dict[str, Any]]:
    """Where a task's images go (Runware posts each finished image to the webhook on its own),
    and its own output settings, which ride along in the job's echo."""
    delivery = DeliverySettings(webhook=output.webhook_url, webhook_per_image=True,
                                upload=output.upload_endpoint, ttl_seconds=output.ttl)
    return delivery, {"outputType": list(output.types), "includeCost": output.include_cost,
                      "deliveryMethod": output.delivery_method, "safety": output.safety}


UPSCALE_TIER = "upscale"


def upscale_submission(task: Upscaling, caller: Caller, raw: dict[str, Any]) -> Submission:
    """An upscale task as the core's Submission: the catalog's upscaler (the one named, else
    the upscale tier's first Runware id), no prompt; results go back under the task's type."""
    model = ModelChoice(task.model) if task.model is not None else ModelChoice(
        None, UPSCALE_TIER, DIALECT)
    generation = GenerationInput(
        model=model, prompt="", output_format=task.output.format,
        output_quality=task.output.quality, safety=safety_input(task.output.safety),
        images_in=ImagesIn(task.image, upscale=Upscale(task.factor, "upscaleFactor")))
    delivery, output = delivered(task.output)
    echo = {"taskType": task.task_type, **output, "_request": raw}
    names = NAMES.with_(image=task.image.parameter)
    return Submission(DIALECT, caller, generation, delivery, task.task_uuid, names, echo)


def task_type_of(job: Job) -> str:
    """The task type a job's replies carry: the one it was sent as (an upscale's), else
    imageInference (jobs stored before upscaling existed have none)."""
    task_type = job.echo.get("taskType")
    return task_type if isinstance(task_type, str) else TASK_TYPE


# Runware's safety modes as the core's levels: "fast" (the default once checkContent is on)
# flags at the medium threshold, "full" at the low one. Runware flags (NSFWContent) and
# delivers; it never withholds.
SAFETY_MODE_LEVELS = {"none": SafetyLevel.BLOCK_NONE, "fast": SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
                      "full": SafetyLevel.BLOCK_LOW_AND_ABOVE}


def safety_input(safety: dict[str, Any]) -> SafetyInput:
    mode = safety.get("mode")
    if mode is None and not safety.get("checkContent"):
        return SafetyInput()
    if safety.get("checkContent") is False:
        return SafetyInput()
    return SafetyInput(SAFETY_MODE_LEVELS[mode or "fast"], OnFlagged.FLAG)


def enhance_prompt(provider_settings: dict[str, Any] | None) -> bool:
    """providerSettings.google.enhancePrompt, as Runware passes Google's own options."""
    google = (provider_settings or {}).get("google")
    return isinstance(google, dict) and google.get("enhancePrompt") is True


def upload_item(task_uuid: str, upload: StoredUpload, base_url: str) -> dict[str, Any]:
    """imageUpload's result: the imageUUID later tasks name (this caller's only) and its URL
    (runware 0.5.24 reads imageURL without a default)."""
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "imageUUID": upload.image_id,
            "imageURL": base_url.rstrip("/") + upload.path}


def from_easel(exc: EaselError) -> RunwareError:
    """A core error (its parameter already in Runware's spelling) as Runware's error entry."""
    if isinstance(exc, RunwareError):
        return exc
    parameter = exc.parameter
    code = ERRORS.code(exc.kind)
    if isinstance(exc, HTTPRefusal):  # a refusal of the HTTP layer keeps its own code
        code = exc.code
    elif exc.kind in PREFIXED:
        # lora[1] -> invalidLora, inputs.mask -> invalidMask
        name = (parameter or "parameter").partition("[")[0].rpartition(".")[2]
        code = f"{code}{name[:1].upper()}{name[1:]}"
    return RunwareError(code, exc.message, parameter, status=ERRORS.status(exc),
                        retry_after=getattr(exc, "retry_after", None))


def job_error(job: Job) -> RunwareError:
    kind = job.error or ErrorKind.INTERNAL
    return RunwareError(ERRORS.code(kind), job.error_message or "the task failed",
                        status=ERRORS.status_of(kind), task_type=task_type_of(job),
                        task_uuid=job.client_id)


def task_error(job: Job) -> RunwareError | None:
    """What a task answers instead of its images: its failure, or a content policy refusal
    (as for a blocked prompt) when every image was withheld. Runware itself only flags; the
    operator's content check floor (`withhold`) withholds."""
    if job.error is not None:
        return job_error(job)
    if all_withheld(job) is None:
        return None
    kind = ErrorKind.CONTENT_BLOCKED
    # What was checked: the prompt's images, or an upscale's (it has no prompt).
    checked = "inputImage" if task_type_of(job) != TASK_TYPE else NAMES("prompt")
    return RunwareError(ERRORS.code(kind), withheld_message(job), checked,
                        status=ERRORS.status_of(kind), task_type=task_type_of(job),
                        task_uuid=job.client_id)


def ack(job: Job) -> dict[str, Any]:
    """The async acknowledgement: no imageUUID, no status (runware 0.5.24 would take it for
    the results)."""
    return {"taskType": task_type_of(job), "taskUUID": job.client_id}


# Reserves bytes of a reply for its caller until the reply has gone (api/replies.py); raises
# RepliesOverBudget (429 with Retry-After) when the caller or the server has too much unread.
Reserve = Callable[[int], None]
OVER_BUDGET_ADVICE = "or ask for outputType URL"


class ReplyBudget:
    """Bytes of base64 image data one reply may carry: a reply is never built past it. With
    `reserve`, each image's bytes are reserved for the caller before they are read."""

    def __init__(self, limit: int, reserve: Reserve | None = None) -> None:
        self.limit = limit
        self.remaining = limit
        self.reserve = reserve

    def spend(self, image: JobImage) -> None:
        cost = base64_bytes([image]) + 64  # base64 of the file, and its name
        if cost > self.remaining:
            raise RunwareError(
                "responseTooLarge",
                f"the images would take this reply past {self.limit} bytes; ask for "
                "outputType URL, or for fewer tasks per request", "outputType", status=413,
            )
        if self.reserve is not None:
            self.reserve(cost)
        self.remaining -= cost


async def result_items(
    job: Job, images: ImageSource, with_status: bool, budget: ReplyBudget | None = None,
    output_types: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One item per image of a completed job, in the task's output types unless told."""
    output_types = output_types or job.echo.get("outputType") or ["URL"]
    per_image_cost = round(job.cost_usd / max(len(job.images), 1), 6)
    items = []
    for image in job.images:
        if image.withheld is not None:  # withheld by the operator's floor: left out
            continue
        item: dict[str, Any] = {"taskType": task_type_of(job), "taskUUID": job.client_id,
                                "imageUUID": image.image_id}
        if with_status:
            item["status"] = "success"
        for output_type in output_types:
            if output_type != "URL" and budget is not None:
                budget.spend(image)
            item[IMAGE_FIELDS[output_type]] = await _image_field(output_type, job, image, images)
        item["seed"] = image.seed
        item["NSFWContent"] = image.nsfw
        if job.echo.get("includeCost"):
            item["cost"] = per_image_cost
        items.append(item)
    return items


async def _image_field(
    output_type: str, job: Job, image: JobImage, images: ImageSource
) -> str:
    if output_type == "URL":
        return images.image_url(job, image)
    if output_type == "base64Data":
        return await images.image_base64(image)
    return await images.image_data_uri(image)


async def webhook_body(job: Job, image_id: str | None, images: ImageSource) -> dict[str, Any]:
    """One webhook POST: a finished image in the sync reply's envelope, or the task's error."""
    error = task_error(job) if job.status is JobStatus.COMPLETED else job_error(job)
    if error is not None:
        return {"errors": [error.to_dict()]}
    items = await result_items(job, images, with_status=False)
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
        {"taskType": task_type_of(job), "taskUUID": job.client_id, "imageUUID": image.image_id,
         "status": "processing"}
        for image in job.images
    ]


async def poll_items(
    job: Job, images: ImageSource, budget: ReplyBudget | None = None,
    output_types: list[str] | None = None,
) -> list[dict[str, Any]]:
    """getResponse: every image of the task; all turn success together, when the job completes."""
    if job.status is JobStatus.COMPLETED:
        return await result_items(job, images, with_status=True, budget=budget,
                                  output_types=output_types)
    return pending_items(job)


def task_details(job: Job, response: dict[str, Any]) -> dict[str, Any]:
    """getTaskDetails' item: the task as it was sent, and `response`, what a poll answers."""
    request = job.echo.get("_request")
    return {"taskType": "getTaskDetails", "taskUUID": job.client_id,
            "request": [request] if isinstance(request, dict) else [], "response": response}


# -- modelSearch ---------------------------------------------------------------------------------

CAPABILITIES = ("text-to-image",)  # what every served model does today


def model_entry(model: Model, facts: BackendFacts) -> dict[str, Any]:
    """One served model as Runware's model search describes a model (the fields both SDKs
    read: runware-sdk keeps the dict, the legacy SDK requires air, name, version, category,
    architecture, tags, private, heroImage and comment)."""
    backend = model.backend
    width, height = _default_size(model)
    serving = (f"; its weights are absent here, so the stand-in {facts.stand_in} serves it"
               if facts.stand_in is not None else "")
    return {
        "air": model.id, "name": model.tier.label, "version": "1", "category": "checkpoint",
        "architecture": backend.family, "type": "base", "private": False, "heroImage": "",
        "tags": sorted({model.tier.name, model.provider, backend.family}),
        "capabilities": ["upscale"] if model.upscales else list(CAPABILITIES),
        "source": "official",
        "comment": f"served by easel on {backend.source} ({facts.license.describe()}){serving}",
        "shortDescription": f"{model.tier.label} on {backend.source}",
        "defaultWidth": width, "defaultHeight": height, "defaultSteps": backend.steps,
        "defaultCFG": backend.guidance, "defaultScheduler": "Default",
        "license": facts.license.id, "priceUsd": model.price_usd,
    }


def lora_entry(adapter: Adapter, catalog: Catalog) -> dict[str, Any]:
    """An allow-listed adapter as Runware's model search lists a LoRA: named by its first AIR
    id when the operator gave one (what a client copies into `lora[].model`), else its name."""
    backend = catalog.backends.get(adapter.base)
    family = backend.family if backend is not None else adapter.base
    licence = adapter.license or "licence not declared"
    return {
        "air": adapter.aliases[0] if adapter.aliases else adapter.name, "name": adapter.name,
        "version": adapter.digest[:12], "category": "lora", "architecture": family,
        "type": "lora", "private": False, "heroImage": "",
        "tags": sorted({"lora", adapter.base, family}), "capabilities": list(CAPABILITIES),
        "source": "community",
        "comment": f"a LoRA for {adapter.base} allow-listed on easel ({licence})",
        "shortDescription": f"LoRA {adapter.name} for {adapter.base}",
        "defaultWeight": adapter.scale, "positiveTriggerWords": adapter.trigger,
        "license": adapter.license,
    }


def _default_size(model: Model) -> tuple[int, int]:
    square = [s for s in model.sizes if s.width == s.height]
    size = square[0] if square else model.sizes[0]
    return size.width, size.height


def model_search(task: ModelSearchTask, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The modelSearch item: `entries` (every served model) filtered as the task asks, then
    paged by limit and offset; totalResults counts every match."""
    found = [e for e in entries if _matches(task, e)]
    if task.sort in ("name", "-name"):
        found.sort(key=lambda e: (e["name"], e["air"]), reverse=task.sort == "-name")
    return {"taskType": "modelSearch", "taskUUID": task.taskUUID, "totalResults": len(found),
            "results": found[task.offset:task.offset + task.limit]}


def _matches(task: ModelSearchTask, entry: dict[str, Any]) -> bool:
    if task.visibility in ("private", "favorite", "owned"):  # every served model is public
        return False
    if task.search is not None:
        text = " ".join([entry["air"], entry["name"], entry["comment"], *entry["tags"]])
        if task.search.strip().lower() not in text.lower():
            return False
    exact = {"category": task.category, "type": task.type, "architecture": task.architecture,
             "source": task.source}
    if any(want is not None and entry[name].lower() != want.lower()
           for name, want in exact.items()):
        return False
    if task.conditioning is not None:  # no served model is a ControlNet
        return False
    tags = {tag.lower() for tag in entry["tags"]}
    if task.tags and not {tag.lower() for tag in task.tags} <= tags:
        return False
    return not task.capabilities or set(task.capabilities) <= set(entry["capabilities"])
