"""OpenAI images (+ AIML's Imagen fields): `POST /v1/images/generations` (protocols.md §3, §4).

The request is held until the images are ready (both APIs are synchronous)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from easel.api.auth import key_is_valid
from easel.api.deps import Services, get_services
from easel.api.dialects.common import bearer_token, ignored_header, read_json_object
from easel.api.dialects.openai import translate as oa
from easel.api.dialects.openai.schemas import ImagesGenerateRequest
from easel.api.openapi import ERRORS, Open, model_schema, request_body, responses
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import JobStatus

router = APIRouter(tags=["openai"])

PATH = "/v1/images/generations"


class ImagesResponse(Open):
    created: int
    data: list[dict[str, Any]]


class ErrorBody(Open):
    error: dict[str, Any]


@router.post(PATH, openapi_extra=request_body(model_schema(ImagesGenerateRequest)),
             responses=responses(ImagesResponse, ErrorBody, ERRORS),
             response_model=ImagesResponse)
async def generate(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}

    def fail(
        status: int, message: str, param: str | None = None, code: str | None = None
    ) -> JSONResponse:
        body = oa.error_body(message, status, param=param, code=code, path=PATH,
                             request_id=request_id, now=datetime.now(UTC))
        return JSONResponse(body, status_code=status, headers=headers)

    if not key_is_valid(services, bearer_token(request)):
        return fail(401, "Incorrect or missing API key (send Authorization: Bearer <key>)",
                    code="invalid_api_key")
    key = request.headers.get("idempotency-key")
    try:
        body = await read_json_object(request, services.settings.max_body_bytes)
        sub = oa.to_submission(services.catalog, body)
        job, _ = await services.jobs.submit(
            sub.request, dialect=oa.DIALECT, job_id=oa.job_id_for(key), options=sub.options
        )
    except EaselError as err:
        if err.kind is ErrorKind.CONFLICT:
            err = EaselError(ErrorKind.CONFLICT, f"Idempotency-Key {key!r} was already used with "
                             "different parameters", "Idempotency-Key")
        return fail(oa.error_status(err), err.message, err.parameter, oa.ERROR_CODES[err.kind])

    hold = services.settings.sync_timeout
    job = await services.jobs.wait(job.id, timeout=hold)
    headers["x-easel-job-id"] = job.id
    if job.status is JobStatus.FAILED:
        return fail(500, job.error_message or "image generation failed",
                    code=job.error_code or "generation_failed")
    if job.status is not JobStatus.COMPLETED:
        return fail(504, f"the images were not ready within {hold:g}s (job {job.id}); retry "
                         "with the same Idempotency-Key to pick them up", code="timeout")
    try:
        reply = await oa.render(job, services.jobs, sub.b64_json, sub.model.tier.name)
    except EaselError as err:
        return fail(oa.error_status(err), err.message, err.parameter, oa.ERROR_CODES[err.kind])
    return JSONResponse(reply, headers={**headers, **ignored_header(sub.ignored)})
