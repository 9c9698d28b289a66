"""easel's own API <-> core: a JobInput to a Submission, a Job to its view, errors to
`{"error": {"code", "message", "parameter"}}`, and the catalog as the playground reads it.

Any catalog model id is accepted here, whichever provider spells it: this is the API of the
playground and of `easel jobs`, where a user picks a model, not a dialect."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from easel.api.dialects.common import (
    ErrorTable,
    ImageSource,
    easel_error_body,
    ordered_images,
    validate_wire,
)
from easel.api.dialects.easel.schemas import JobInput
from easel.api.limits import HTTPRefusal
from easel.catalog import Backend, Catalog, Model, Tier
from easel.domain.delivery import Delivery
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job, JobImage, JobStatus
from easel.domain.lora import Adapter, LoraChoice
from easel.domain.request import ImageFormat
from easel.domain.safety import OnFlagged, PersonGeneration, SafetyInput, SafetyLevel
from easel.domain.submission import (
    MAX_UPSCALED_SIDE,
    UPSCALE_FACTORS,
    Caller,
    GenerationInput,
    ImageInput,
    ImagesIn,
    ModelChoice,
    Outpaint,
    Submission,
    Upscale,
    size_asked,
)
from easel.services.port import BackendFacts

DIALECT = "easel"
Facts = Callable[[Backend], BackendFacts]  # what serves a backend here (Port.facts)

# The codes are the kinds themselves: easel's own API needs no other vocabulary.
ERRORS = ErrorTable({kind: kind.value for kind in ErrorKind})
# A task_id names its job in every route's path (/easel/jobs/{id}) and on `easel jobs`' command
# line, so it is one path segment as it is sent: no `/`, `%`, `?` or space, and no leading dot
# (clients fold `.` and `..` segments away).
TASK_ID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]*")


def to_submission(body: dict[str, Any], caller: Caller) -> Submission:
    wire = validate_wire(JobInput, body)
    sent = wire.model_fields_set
    generation = GenerationInput(
        model=ModelChoice(wire.model),
        prompt=wire.prompt,
        size=size_asked(wire.aspect_ratio, wire.resolution.lower(), from_image=wire.image
                        is not None, ratio_sent="aspect_ratio" in sent,
                        resolution_sent="resolution" in sent),
        num_images=wire.num_images,
        negative_prompt=wire.negative_prompt or None,
        seed=wire.seed,
        output_format=ImageFormat(wire.output_format),
        output_quality=wire.output_quality,
        steps=wire.steps,
        guidance_scale=wire.guidance_scale,
        safety=SafetyInput(SafetyLevel(wire.safety_setting), OnFlagged(wire.on_flagged),
                           PersonGeneration(wire.person_generation)),
        watermark=wire.watermark,
        enhance_prompt=wire.enhance_prompt,
        loras=tuple(LoraChoice(lora.name, lora.weight) for lora in wire.loras),
        images_in=_images_in(wire),
    )
    return Submission(DIALECT, caller, generation, task_id=_task_id(wire.task_id))


def _task_id(task_id: str | None) -> str | None:
    if task_id is not None and not TASK_ID.fullmatch(task_id):
        raise invalid("task_id", "task_id may hold only ASCII letters, digits, '-', '_', '.' "
                      f"and ':' (and not begin with '.'), got {task_id[:100]!r}")
    return task_id


def _images_in(wire: JobInput) -> ImagesIn | None:
    if wire.image is None:
        if wire.upscale is not None:
            raise EaselError(ErrorKind.MISSING, "image: an upscale enlarges an image; send it",
                             "image")
        for name in ("mask", "strength", "outpaint"):
            if getattr(wire, name) is not None:
                raise invalid(name, f"{name} needs an image to draw from (image)")
        return None
    image = ImageInput("image", text=wire.image)
    if wire.upscale is not None:
        _check_upscale(wire)
        return ImagesIn(image, upscale=Upscale(wire.upscale, "upscale"))
    if wire.outpaint is not None:
        return ImagesIn(image, None, wire.strength, default_strength=1.0,
                        outpaint=_outpaint(wire))
    mask = None if wire.mask is None else ImageInput("mask", text=wire.mask)
    return ImagesIn(image, mask, wire.strength)


def _check_upscale(wire: JobInput) -> None:
    """An upscale enlarges the image as it is, to its own shape times the factor: what would
    draw or size it is refused by name, not ignored."""
    drawing = {"mask": wire.mask is not None, "strength": wire.strength is not None,
               "outpaint": wire.outpaint is not None, "prompt": bool(wire.prompt),
               "negative_prompt": bool(wire.negative_prompt),
               "enhance_prompt": wire.enhance_prompt,
               "aspect_ratio": "aspect_ratio" in wire.model_fields_set,
               "resolution": "resolution" in wire.model_fields_set}
    for name, sent in drawing.items():
        if sent:
            raise invalid(name, f"{name}: an upscale enlarges the image as it is (its shape "
                                f"times the factor); send {name} or upscale, not both")


def _outpaint(wire: JobInput) -> Outpaint:
    margins = wire.outpaint
    assert margins is not None
    if wire.mask is not None:
        raise invalid("mask", "mask: outpaint makes its own mask (the margins); send one or "
                              "the other")
    if not (margins.top or margins.right or margins.bottom or margins.left):
        raise invalid("outpaint", "outpaint extends nothing: give top, right, bottom or left")
    return Outpaint(margins.top, margins.right, margins.bottom, margins.left, margins.blur)


def job_view(job: Job, images: ImageSource | None = None) -> dict[str, Any]:
    """A job as easel's own routes, its event stream and `easel jobs` show it, whatever dialect
    sent it. With `images`, each stored image's URL (it resolves until `expires_at`)."""
    r = job.request
    ordered = ordered_images(job)
    return {
        "id": job.client_id, "job": job.id, "dialect": job.dialect, "status": job.status.value,
        "model": r.model, "prompt": r.client_prompt, "negative_prompt": r.negative_prompt,
        "prompt_enhancement": {"state": r.enhancement.value, "prompt": r.prompt,
                               "detail": r.enhancement_detail},
        "safety": {**r.safety.to_json(), "watermark": r.watermark},
        "size": f"{r.width}x{r.height}", "width": r.width, "height": r.height,
        "num_images": r.num_images, "output_format": r.output_format.value,
        "output_quality": r.output_quality, "steps": r.steps, "guidance_scale": r.guidance_scale,
        "loras": [lora.to_json() for lora in r.loras],
        "operation": r.operation.value, "strength": r.strength,
        "images": len(job.images),
        "seeds": [image.seed for image in ordered],
        "outputs": [
            {"index": image.index, "seed": image.seed, "ready": image.ready,
             "url": image_url(job, image, images), "nsfw": image.nsfw,
             "withheld": image.withheld.value if image.withheld else None,
             "scores": image.scores}
            for image in ordered
        ],
        "expires_at": [None if image.expires_at is None else image.expires_at.isoformat()
                       for image in ordered],
        "progress": progress(job),
        "queue": None if job.queue is None else {
            "ahead": job.queue.ahead,
            "wait_seconds": None if job.queue.seconds is None else round(job.queue.seconds, 1)},
        "error": None if job.error is None else {"kind": job.error.value,
                                                 "message": job.error_message},
        "created_at": job.created_at.isoformat(),
        "started_at": None if job.started_at is None else job.started_at.isoformat(),
        "finished_at": None if job.finished_at is None else job.finished_at.isoformat(),
        "cancel_requested": job.cancel_requested, "backend": job.backend,
        "stand_in_reason": job.stand_in_reason, "cost_usd": job.cost_usd,
    }


def image_url(job: Job, image: JobImage, images: ImageSource | None) -> str | None:
    """The URL of a stored image of a completed job; None before (or without `images`)."""
    if images is None or not image.deliverable or job.status is not JobStatus.COMPLETED:
        return None
    return images.image_url(job, image)


def progress(job: Job) -> dict[str, Any]:
    """Denoising steps done of all the job's steps. The images of one job are denoised together
    (one batch), so every image is at the same step; a completed job is at its last."""
    total = max(job.progress_total, 0)
    step = total if job.status is JobStatus.COMPLETED else min(job.progress_step, total)
    return {"step": step, "total": total,
            "fraction": round(step / total, 4) if total else 0.0}


def error_body(err: EaselError) -> dict[str, Any]:
    # A refusal of the HTTP layer (413 body too large, 415, 408) keeps its own code.
    code = err.code if isinstance(err, HTTPRefusal) else ERRORS.code(err.kind)
    body = easel_error_body(code, err.message, err.parameter)
    if err.allowed is not None:
        body["error"]["allowed"] = err.allowed
    return body


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """What a client may see about a delivery (never the body, never more than a status)."""
    return {
        "id": delivery.id, "kind": delivery.kind, "imageUUID": delivery.image_id or None,
        "event": delivery.event, "status": delivery.status, "attempts": delivery.attempts,
        "lastStatus": delivery.last_status, "lastError": delivery.last_error,
    }


def catalog_view(catalog: Catalog, facts: Facts,
                 adapters: Sequence[Adapter] = ()) -> dict[str, Any]:
    """Every model id, grouped by tier, with what a form needs to offer only valid choices:
    sizes per resolution, image count, prompt limits, negative prompt, steps and guidance, and
    the LoRA adapters allow-listed for the tier's backend."""
    tiers = []
    for tier in catalog.tiers.values():
        models = [m for m in catalog.models.values() if m.tier.name == tier.name]
        if models:
            fitting = [a for a in adapters if a.base == tier.backend.name]
            tiers.append(_tier_view(tier, sorted(models, key=lambda m: (m.provider, m.id)),
                                    facts, fitting))
    return {"tiers": tiers, "formats": [f.value for f in ImageFormat]}


def _tier_view(tier: Tier, models: list[Model], facts: Facts,
               adapters: Sequence[Adapter]) -> dict[str, Any]:
    backend = tier.backend
    return {
        "tier": tier.name, "label": tier.label, "price_usd": tier.price_usd,
        **facts(backend).to_json(),
        "steps": backend.steps, "min_steps": backend.min_steps, "max_steps": backend.max_steps,
        "guidance": backend.guidance,
        "guidance_range": None if backend.guidance_range is None else list(
            backend.guidance_range),
        "models": [_model_view(m) for m in models],
        "loras": [adapter.to_json() for adapter in adapters],
    }


def _model_view(model: Model) -> dict[str, Any]:
    return {
        "id": model.id, "provider": model.provider, "resolutions": list(model.resolutions),
        "upscales": model.upscales,  # enlarges an image (`upscale`), draws nothing from text
        **({"upscale_factors": list(UPSCALE_FACTORS), "max_side": MAX_UPSCALED_SIDE}
           if model.upscales else {}),
        "max_images": model.max_images, "prompt_min": model.prompt_min,
        "prompt_max": model.prompt_max, "negative_prompt": model.negative_prompt,
        # A distilled model runs a negative prompt through true CFG: twice the time and price.
        "negative_prompt_cost_factor": 2 if model.negative_prompt
        and model.backend.true_cfg_scale is not None else 1,
        "price_usd": model.price_usd,
        "sizes": [{"aspect_ratio": s.aspect_ratio, "resolution": s.resolution,
                   "width": s.width, "height": s.height} for s in model.sizes],
    }
