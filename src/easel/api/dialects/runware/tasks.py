"""Runware's tasks, run the same for both transports (REST in routes.py, WebSocket sessions in
sessions.py): each on its own, so one bad task in a batch gets its error while the others run.
`run_task` never raises; a frame that is no array of tasks is one RunwareError."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from easel.api.dialects.common import MAX_DEPTH, nested_at_most
from easel.domain.delivery import FAILED
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job
from easel.domain.submission import Caller, ImageInput, Submission
from easel.services.port import JobRef, Port

from .schemas import (
    UPSCALE_TASK_TYPES,
    RunwareError,
    parse_image_inference,
    parse_image_upload,
    parse_model_search,
    parse_upscale,
    task_uuid,
)
from .translate import (
    DIALECT,
    ERRORS,
    NAMES,
    TASK_TYPE,
    ReplyBudget,
    ack,
    from_easel,
    lora_entry,
    model_entry,
    model_search,
    poll_items,
    report_delivery_failures,
    result_items,
    task_details,
    task_error,
    to_submission,
    upload_item,
    upscale_submission,
)

log = logging.getLogger(__name__)

TASK_TYPES = ("imageInference", "upscale", "imageUpscale", "imageUpload", "getResponse",
              "getTaskDetails", "modelSearch", "authentication", "ping")


@dataclass
class Outcome:
    data: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RunwareError] = field(default_factory=list)

    def envelope(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.data:
            out["data"] = self.data
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out or {"data": []}


def failed(error: RunwareError) -> Outcome:
    return Outcome(errors=[error])


async def run_task(port: Port, caller: Caller, task: Any, budget: ReplyBudget) -> Outcome:
    """Any task except authentication; never raises. `budget` bounds the reply's image data."""
    task_type = task.get("taskType") if isinstance(task, dict) else None
    uuid_ = task.get("taskUUID") if isinstance(task, dict) else None
    uuid_ = uuid_ if isinstance(uuid_, str) else None
    try:
        return await _run(port, caller, task, task_type, budget)
    except EaselError as exc:  # the task's own error, in the reply's errors (RunwareError too)
        return failed(from_easel(exc).for_task(type_name(task_type), uuid_))
    except Exception:
        log.exception("runware task failed unexpectedly")
        return failed(RunwareError("internalServerError", "internal error", status=500,
                                   task_type=type_name(task_type), task_uuid=uuid_))


async def _run(
    port: Port, caller: Caller, task: Any, task_type: Any, budget: ReplyBudget
) -> Outcome:
    if not isinstance(task, dict):
        raise RunwareError("invalidTask", "each task must be a JSON object", "task")
    if task_type == "ping":
        return Outcome(data=[{"taskType": "ping", "pong": True}])
    if task_type == TASK_TYPE:
        parsed = parse_image_inference(task)
        submission = to_submission(parsed, caller, task)
        return await _submitted(port, submission, parsed.output.delivery_method, budget)
    if task_type in UPSCALE_TASK_TYPES:
        upscale = parse_upscale(task)
        submission = upscale_submission(upscale, caller, task)
        return await _submitted(port, submission, upscale.output.delivery_method, budget)
    if task_type == "imageUpload":
        upload = parse_image_upload(task)
        stored = await port.upload_image(caller, ImageInput("image", text=upload.image))
        return Outcome(data=[upload_item(upload.taskUUID, stored, port.images.base_url)])
    if task_type == "getResponse":
        return await _poll_outcome(port, await _polled_job(port, caller, task), budget)
    if task_type == "getTaskDetails":
        return await _get_task_details(port, caller, task)
    if task_type == "modelSearch":
        entries = [model_entry(m, port.facts(m.backend)) for m in port.catalog.models.values()]
        adapters = await asyncio.to_thread(port.adapters)
        entries += [lora_entry(a, port.catalog) for a in adapters]
        return Outcome(data=[model_search(parse_model_search(task), entries)])
    if task_type is None:
        raise RunwareError("missingTaskType", "taskType is required", "taskType")
    raise RunwareError(
        "invalidTaskType",
        f"taskType {str(task_type)[:64]!r} is not supported; use {', '.join(TASK_TYPES)}",
        "taskType",
    )


def type_name(task_type: Any) -> str | None:
    return task_type if isinstance(task_type, str) else None


async def _submitted(
    port: Port, submission: Submission, delivery_method: str, budget: ReplyBudget
) -> Outcome:
    """A task that makes images (imageInference, upscale): acknowledged at once when async,
    else answered with its images."""
    if delivery_method == "async":
        job, _created = await port.submit(submission)
        return Outcome(data=[ack(job)])
    job = await port.settle(submission)
    if (error := task_error(job)) is not None:
        return failed(error)
    if not job.status.terminal:
        raise RunwareError(ERRORS.code(ErrorKind.TIMEOUT), "the task did not finish in time; "
                           "use deliveryMethod async", status=504)
    return Outcome(data=await result_items(job, port.images, with_status=False, budget=budget))


async def _polled_job(port: Port, caller: Caller, task: dict[str, Any]) -> Job:
    """The caller's task a getResponse or getTaskDetails names (polls spend the rate budget)."""
    ref = JobRef.chosen(DIALECT, task_uuid(task), NAMES("task_id"), noun="task")
    return await port.find(caller, ref)


async def _poll_outcome(
    port: Port, job: Job, budget: ReplyBudget | None, output_types: list[str] | None = None,
) -> Outcome:
    """What a poll of `job` answers: its error, or every image with finally failed
    deliveries marked."""
    if (error := task_error(job)) is not None:
        return failed(error)
    items = await poll_items(job, port.images, budget, output_types)
    if job.status.terminal:
        failures = [d for d in await port.deliveries(job) if d.status == FAILED]
        report_delivery_failures(items, failures)
    return Outcome(data=items)


async def _get_task_details(port: Port, caller: Caller, task: dict[str, Any]) -> Outcome:
    """The task as sent and what a poll answers now, with image URLs rather than base64 data:
    the details are one item, which base64 images would make too large for a WebSocket frame
    (getResponse returns the data, one image per frame)."""
    job = await _polled_job(port, caller, task)
    response = await _poll_outcome(port, job, None, output_types=["URL"])
    return Outcome(data=[task_details(job, response.envelope())])


def parse_frame(raw: str | bytes, max_tasks: int) -> list[Any]:
    """A request body or WebSocket frame as its tasks; a RunwareError for the whole of it."""
    try:
        tasks = json.loads(raw)
    except RecursionError:
        raise RunwareError("invalidJSON", "the body is nested too deeply", "body") from None
    except (ValueError, UnicodeDecodeError) as exc:  # integers over 4300 digits included
        raise RunwareError("invalidJSON", f"the body is not valid JSON: {str(exc)[:200]}",
                           "body") from None
    if not isinstance(tasks, list):
        raise RunwareError("invalidPayload", "the body must be a JSON array of tasks", "body")
    if not tasks:
        raise RunwareError("invalidPayload", "the array of tasks is empty", "body")
    if not nested_at_most(tasks, MAX_DEPTH):
        raise RunwareError("invalidPayload", f"the body is nested deeper than {MAX_DEPTH} "
                           "levels", "body")
    tasks = _distinct_polls(tasks)
    if len(tasks) > max_tasks:
        raise RunwareError("tooManyTasks", f"at most {max_tasks} tasks per request, got "
                           f"{len(tasks)}", "body")
    return tasks


def _distinct_polls(tasks: list[Any]) -> list[Any]:
    """A getResponse for a task already polled in the same request is answered once."""
    seen: set[str] = set()
    out = []
    for task in tasks:
        if is_poll(task) and isinstance(task.get("taskUUID"), str):
            key = task["taskUUID"].lower()
            if key in seen:
                continue
            seen.add(key)
        out.append(task)
    return out


def is_auth(task: Any) -> bool:
    return isinstance(task, dict) and task.get("taskType") == "authentication"


def is_poll(task: Any) -> bool:
    return isinstance(task, dict) and task.get("taskType") == "getResponse"


def auth_error(key: Any) -> RunwareError:
    """Runware's refusal of a missing or wrong key, as the authentication task's error."""
    if not key:
        return RunwareError("missingApiKey", "an API key is required", "apiKey", status=401,
                            task_type="authentication")
    return RunwareError("invalidApiKey", "invalid API key", "apiKey", status=401,
                        task_type="authentication")
