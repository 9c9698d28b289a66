"""WaveSpeed v3 routes: submit per model id, poll by prediction id (protocols.md §2)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from easel.api.caller import Authenticated, CorePort, port_of
from easel.api.dialects.common import (
    Dialect,
    JsonBody,
    ignored_header,
    reserve_reply,
    stand_in_header,
)
from easel.api.dialects.wavespeed import translate, uploads
from easel.api.dialects.wavespeed.schemas import ImagenInput
from easel.api.limits import HTTPRefusal
from easel.api.openapi import (
    BEARER,
    ERRORS,
    Open,
    example,
    model_schema,
    request_body,
    responses,
    security,
)
from easel.domain.errors import EaselError, ErrorKind, Throttled
from easel.domain.job import Job
from easel.domain.submission import Caller
from easel.services.port import JobRef, Port

router = APIRouter(tags=["wavespeed"])
KEY = security(BEARER)

# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one) on the model ids below.
EXAMPLES = {
    "sync": example("Wait for the image (enable_sync_mode)", {
        "prompt": "a red fox in fresh snow", "aspect_ratio": "1:1", "num_images": 1,
        "enable_sync_mode": True}),
    "async": example("Submit, then poll /api/v3/predictions/{id}/result", {
        "prompt": "a lighthouse at dusk, oil painting", "aspect_ratio": "16:9",
        "num_images": 2, "output_format": "png", "seed": 7}),
}
MODEL_IDS = {
    "fast": example("Imagen 4 Fast", "google/imagen4-fast"),
    "standard": example("Imagen 4", "google/imagen4"),
    "ultra": example("Imagen 4 Ultra", "google/imagen4-ultra"),
}


class Envelope(Open):
    code: int
    message: str
    data: dict[str, Any] | None = None


class ErrorBody(Open):
    code: int
    message: str


class ListEnvelope(Open):
    code: int
    message: str
    data: list[dict[str, Any]]


UNAUTHENTICATED = "Invalid or missing API key (send Authorization: Bearer <key>)"


def render_error(err: EaselError, request: Request) -> JSONResponse:
    """Every failure of a whole WaveSpeed request. A submission refused for the caller's own
    mistake is a failed task (HTTP 200, status failed, data.code 1400/1401), because the SDK
    ignores the submit reply's status and always polls /result (protocols.md §10.4); anything
    else is `{code, message}` with the HTTP status."""
    model_id = request.path_params.get("model_id")
    if model_id is not None and translate.is_refused_as_task(err):
        try:
            return _refused_as_task(request, model_id, err)
        except Throttled as over_budget:
            response = _error_reply(over_budget)
            response.headers["Retry-After"] = str(over_budget.retry_after)
            return response
    return _error_reply(err)


def _error_reply(err: EaselError) -> JSONResponse:
    status = translate.ERRORS.status(err)
    message = UNAUTHENTICATED if err.kind is ErrorKind.UNAUTHENTICATED else err.message
    return JSONResponse(translate.error_body(status, message), status_code=status)


def _refused_as_task(request: Request, model_id: str, err: EaselError) -> JSONResponse:
    """A refused submission as its failed task (and its webhook). One refused before it reached
    the core, which spends the rate budget first, spends it here: refusals, and the webhooks
    they send, are not free. Throttled over the budget."""
    port = port_of(request)
    caller = getattr(request.state, "caller", None)
    if caller is not None and not getattr(request.state, "submitted", False):
        port.spend_rate_budget(caller)
    sent = getattr(request.state, "json_body", None)
    data = translate.refusal_data(model_id, err, datetime.now(UTC), port.images.base_url,
                                  _refusal_seal(port, caller), sent)
    _notify_refusal(request, port, sent, data)
    return JSONResponse(translate.envelope(data))


def _notify_refusal(request: Request, port: Port, sent: dict[str, Any] | None,
                    data: dict[str, Any]) -> None:
    """WaveSpeed POSTs `data` to the webhook on failed, a refusal included: a client that
    waits for its webhook hears of it too."""
    caller = getattr(request.state, "caller", None)
    target = request.query_params.get("webhook") or (sent or {}).get("webhook_url")
    if caller is not None and isinstance(target, str) and target:
        port.notify(caller, translate.DIALECT, target, data)


def _refusal_seal(port: Port, caller: Caller | None) -> translate.RefusalSeal:
    """The seal of the refusal ids made for (and read back by) this caller only."""
    principal = caller.principal if caller is not None else ""
    return translate.RefusalSeal(port.sign(translate.REFUSAL_PURPOSE, principal.encode()))


async def _reply(request: Request, caller: Caller, port: Port, job: Job) -> dict[str, Any]:
    """The job's `data`; its base64 outputs reserved first (a 429 when too much is unread)."""
    reserve_reply(request, caller, translate.base64_reply_bytes(job), "enable_base64_output",
                  "or submit with enable_base64_output false for URLs")
    outputs = await translate.outputs(job, port.images)
    return translate.job_data(job, port.images.base_url, outputs)


def _prediction(prediction_id: str) -> JobRef:
    return JobRef.easel(prediction_id, "prediction_id", noun="prediction")


# Media uploads (images to edit), before the catch-all submit route would take them for model
# ids: the binary form (SDK 1.x) and the ticket flow (SDK 2.x: a ticket, then a PUT).
@router.post("/api/v3/media/upload/binary", response_model=Envelope, summary="Upload an image",
             openapi_extra=KEY, responses=responses(Envelope, ErrorBody, ERRORS))
async def upload_binary(request: Request, caller: Authenticated, port: CorePort) -> JSONResponse:
    return uploads.reply(await uploads.binary(request, caller, port))


@router.post("/api/v3/media/uploads", response_model=Envelope, summary="Ask to upload an image",
             openapi_extra={**request_body(model_schema(uploads.TicketRequest)), **KEY},
             responses=responses(Envelope, ErrorBody, ERRORS))
async def upload_ticket(caller: Authenticated, port: CorePort, body: JsonBody) -> JSONResponse:
    port.spend_rate_budget(caller)
    return uploads.reply(uploads.ticket(body, caller, port, time.time()))


@router.put("/api/v3/media/uploads/{name}", response_model=Envelope,
            summary="Upload an image's bytes (the ticket's signed URL)",
            responses=responses(Envelope, ErrorBody, ERRORS))
async def upload_put(name: str, request: Request, port: CorePort) -> JSONResponse:
    return uploads.reply(await uploads.put(request, name, port, time.time()))


# WaveSpeed endpoints easel does not offer: answered plainly, before the catch-all submit
# route would take them for model ids.
NOT_OFFERED = {
    "/api/v3/model/pricing": "the pricing endpoint (prices are in `easel models`)",
    "/api/v3/predictions": "the prediction history (use `easel jobs`)",
    "/api/v3/balance": "an account balance (a self-hosted server bills nothing)",
}


def _not_offered(what: str) -> Any:
    async def refuse(request: Request) -> JSONResponse:
        raise HTTPRefusal(404, "notFound",
                          f"easel does not offer {what}: {request.method} {request.url.path}",
                          None)

    return refuse


for _path, _what in NOT_OFFERED.items():
    router.add_api_route(_path, _not_offered(_what), methods=["POST", "GET"],
                         include_in_schema=False)


@router.get("/api/v3/webhook/secret", response_model=Envelope, summary="Webhook secret",
            openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
async def webhook_secret(caller: Authenticated, port: CorePort) -> JSONResponse:
    """The secret this caller's webhooks are signed with (`webhook-signature: v3,<hex>`)."""
    key = port.webhook_key(translate.WEBHOOK_PURPOSE, caller.principal.encode())
    return JSONResponse(translate.envelope({"secret": translate.secret_text(key)}))


@router.get("/api/v3/models", response_model=ListEnvelope, summary="List models",
            openapi_extra=KEY,
            responses=responses(ListEnvelope, ErrorBody, ERRORS))
async def models(_caller: Authenticated, port: CorePort) -> JSONResponse:
    """The WaveSpeed model ids easel serves, with their tier, backend and price."""
    return JSONResponse(translate.envelope(translate.model_list(port.catalog)))


# Before the catch-all submit route, which would take this path for a model id.
@router.post("/api/v3/predictions/{prediction_id}/cancel", response_model=Envelope,
             summary="Cancel a prediction", openapi_extra=KEY,
             responses=responses(Envelope, ErrorBody, ERRORS))
async def cancel(prediction_id: str, request: Request, caller: Authenticated,
                 port: CorePort) -> JSONResponse:
    """Cancel a queued or running prediction; it ends `cancelled` (a running one within one
    denoising step). Polling it, or its webhook, then says so."""
    job = await port.cancel(caller, _prediction(prediction_id))
    return JSONResponse(translate.envelope(await _reply(request, caller, port, job)))


@router.post("/api/v3/{model_id:path}", summary="Submit a prediction",
             openapi_extra={**request_body(model_schema(ImagenInput), EXAMPLES), **KEY},
             responses=responses(Envelope, ErrorBody, ERRORS), response_model=Envelope)
async def submit(
    model_id: Annotated[str, Path(openapi_examples=MODEL_IDS)],
    request: Request,
    caller: Authenticated,
    port: CorePort,
    body: JsonBody,
    webhook: str | None = None,
) -> JSONResponse:
    call = translate.to_submission(model_id, body, webhook, caller,
                                   _takes_negative_prompt(port, model_id))
    request.state.submitted = True  # the core spends its rate budget (render_error: not again)
    headers = ignored_header(call.ignored)
    if not call.sync:
        job, _ = await port.submit(call.submission)
        return JSONResponse(translate.envelope(await _reply(request, caller, port, job)),
                            headers={**headers, **stand_in_header(job)})
    # Sync mode: the task itself says what happened, failed or still running included.
    job = await port.settle(call.submission)
    data = await _reply(request, caller, port, job)
    if not job.status.terminal:
        data = translate.sync_timeout_data(data, port.limits.sync_timeout)
    return JSONResponse(translate.envelope(data), headers={**headers, **stand_in_header(job)})


def _takes_negative_prompt(port: Port, model_id: str) -> bool:
    """Whether the model uses a negative prompt; an unknown id is left for the core to refuse."""
    try:
        return port.model(model_id, translate.PROVIDER).negative_prompt
    except EaselError:
        return True


@router.get("/api/v3/predictions/{prediction_id}/result", response_model=Envelope,
            summary="Poll a prediction", openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
@router.get("/api/v3/predictions/{prediction_id}", response_model=Envelope,
            summary="Poll a prediction (the same, without /result)", openapi_extra=KEY,
            responses=responses(Envelope, ErrorBody, ERRORS))
async def result(prediction_id: str, request: Request, caller: Authenticated,
                 port: CorePort) -> JSONResponse:
    refusal = translate.decode_refusal(prediction_id, port.images.base_url,
                                       _refusal_seal(port, caller))
    if refusal is not None:
        port.spend_rate_budget(caller)  # as the poll of a job does (port.find)
        return JSONResponse(translate.envelope(refusal))
    job = await port.find(caller, _prediction(prediction_id))
    return JSONResponse(translate.envelope(await _reply(request, caller, port, job)),
                        headers=stand_in_header(job))


def dialect() -> Dialect:
    """This dialect as the app mounts it (api/app.py lists every dialect)."""
    return Dialect(translate.DIALECT, router, translate.ERRORS, ("/api/v3",), render_error,
                   translate.webhook_body, sign_webhook=translate.sign_webhook)
