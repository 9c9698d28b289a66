"""Runware's task API on `/v1`: REST (a JSON array of tasks) here, WebSocket sessions in
sessions.py; the tasks themselves are run by tasks.py for both transports.

A failure of the whole request (a body that is no array of tasks, no live key) is raised and
rendered by `render_error`, in the envelope a task's error has."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from easel.api.caller import BODY, CorePort, identify, presented_key
from easel.api.dialects.common import Dialect
from easel.api.limits import read_body
from easel.api.openapi import BEARER, example, request_body, responses, security
from easel.api.openapi import ERRORS as OPENAPI_ERRORS
from easel.api.replies import hold_of
from easel.domain.errors import EaselError, Unauthenticated, invalid
from easel.domain.submission import Caller

from .schemas import IMAGE_TASK_TYPES, Envelope, tasks_schema
from .sessions import Sessions, make_websocket
from .tasks import Outcome, auth_error, failed, is_auth, is_poll, parse_frame, run_task
from .translate import (
    DIALECT,
    ERRORS,
    OVER_BUDGET_ADVICE,
    ReplyBudget,
    from_easel,
    webhook_body,
)

# -- REST -----------------------------------------------------------------------------------


async def rest(request: Request, port: CorePort) -> JSONResponse:
    limits = port.limits
    body = await read_body(request, limits.max_body_bytes, limits.body_timeout)
    tasks = parse_frame(body, limits.max_tasks_per_request)
    caller = _rest_caller(request, tasks)
    hold = hold_of(request)  # base64 images held for the caller until the reply has gone
    budget = ReplyBudget(limits.max_reply_bytes, lambda size: hold.reserve(
        caller.principal, size, "outputType", OVER_BUDGET_ADVICE))
    # Polls run after the batch's submissions, so a getResponse may follow its own task.
    first = [t for t in tasks if not is_auth(t) and not is_poll(t)]
    outcomes = await _in_order(first, lambda task: run_task(port, caller, task, budget))
    polls = [t for t in tasks if is_poll(t)]
    outcomes += await asyncio.gather(*(run_task(port, caller, t, budget) for t in polls))
    merged = Outcome()
    for outcome in outcomes:
        merged.data.extend(outcome.data)
        merged.errors.extend(outcome.errors)
    return reply(merged)


async def _in_order(
    tasks: list[Any], run: Callable[[Any], Awaitable[Outcome]]
) -> list[Outcome]:
    """Each task's outcome, in the list's order. Tasks acknowledged at once (async delivery,
    model searches) run one after another, so they reach the queue, and its fair order, in the
    order the client listed them; held ones (sync delivery) run together."""
    outcomes: dict[int, Outcome] = {}
    held = [i for i, task in enumerate(tasks) if _held(task)]
    for i, task in enumerate(tasks):
        if not _held(task):
            outcomes[i] = await run(task)
    for i, outcome in zip(held, await asyncio.gather(*(run(tasks[i]) for i in held)),
                          strict=True):
        outcomes[i] = outcome
    return [outcomes[i] for i in range(len(tasks))]


def _held(task: Any) -> bool:
    """A task that makes images, answered when they are ready (Runware's default)."""
    return isinstance(task, dict) and task.get("taskType") in IMAGE_TASK_TYPES and \
        task.get("deliveryMethod", "sync") != "async"


def _rest_caller(request: Request, tasks: list[Any]) -> Caller:
    """The key of the headers, else that of an authentication task in the body. Both sent, they
    must agree: an authentication task is never passed over in silence (a wrong key in it is
    refused as a wrong key is, another live key is a conflict naming apiKey)."""
    key, credential = presented_key(request)
    in_body = [task.get("apiKey") if isinstance(task.get("apiKey"), str) else ""
               for task in tasks if is_auth(task)]
    if key is None:
        return identify(request, in_body[0] if in_body else None,
                        BODY if in_body else credential)
    caller = identify(request, key, credential)
    for other in {sent for sent in in_body if sent != key}:
        if identify(request, other, BODY).principal != caller.principal:
            raise invalid("apiKey", "the authentication task's apiKey is another key than the "
                          "Authorization header's: send one of them")
    return caller


def reply(outcome: Outcome) -> JSONResponse:
    """200 when anything succeeded; otherwise the status of the first error. A refusal that
    says when to come back sets Retry-After."""
    status = 200 if outcome.data or not outcome.errors else outcome.errors[0].status
    waits = [e.retry_after for e in outcome.errors if e.retry_after is not None]
    headers = {"Retry-After": str(max(waits))} if waits else None
    return JSONResponse(outcome.envelope(), status_code=status, headers=headers)


def render_error(err: EaselError, _request: Request) -> JSONResponse:
    """A failure of the whole request, in the envelope a task's error has."""
    if isinstance(err, Unauthenticated):
        return reply(failed(auth_error(err.credential)))
    return reply(failed(from_easel(err)))


# Bodies that work as they are with the default catalog (tests/server/test_openapi_reference.py
# posts each one). taskUUID is the idempotency key: the same one again returns the same images.
EXAMPLES = {
    "sync": example("One image, waited for (change taskUUID for a new one)", [{
        "taskType": "imageInference", "taskUUID": "3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f",
        "model": "google:2@3", "positivePrompt": "a red fox in fresh snow",
        "width": 1024, "height": 1024, "numberResults": 1, "outputType": "URL"}]),
    "async": example("Submit without waiting, then getResponse", [{
        "taskType": "imageInference", "taskUUID": "0b9e6f5d-4c3a-4b2e-8d1f-7a6b5c4d3e2f",
        "model": "google:2@1", "positivePrompt": "a lighthouse at dusk, oil painting",
        "width": 1280, "height": 896, "outputFormat": "PNG", "deliveryMethod": "async"}, {
        "taskType": "getResponse", "taskUUID": "0b9e6f5d-4c3a-4b2e-8d1f-7a6b5c4d3e2f"}]),
    "ping": example("Ping", [{"taskType": "ping", "ping": True}]),
}


def dialect() -> Dialect:
    """Runware's dialect, with its own WebSocket sessions (one registry per app). Its clients
    choose job ids (taskUUID)."""
    router = APIRouter(tags=["runware"])
    # The key: a bearer token, or an authentication task in the body (optional here).
    router.add_api_route("/v1", rest, methods=["POST"], response_model=Envelope,
                         summary="Run tasks (REST)",
                         description="A JSON array of tasks, each answered on its own. The "
                                     "WebSocket on the same path is described in the tag.",
                         openapi_extra={**request_body(tasks_schema(), EXAMPLES),
                                        **security(BEARER, optional=True)},
                         responses=responses(Envelope, Envelope, OPENAPI_ERRORS))
    router.add_api_route("/v1/", rest, methods=["POST"], include_in_schema=False)
    websocket = make_websocket(Sessions())
    router.add_api_websocket_route("/v1", websocket)
    router.add_api_websocket_route("/v1/", websocket)
    return Dialect(DIALECT, router, ERRORS, (), render_error, webhook_body,
                   exact=("/v1", "/v1/"), chooses_ids=True)
