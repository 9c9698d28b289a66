"""Runware's task API on `/v1`: REST (a JSON array of tasks) and WebSocket (sessions).

Every task is handled on its own: one bad task in a batch gets its error while the others run,
and nothing a client sends can end a WebSocket session that has other tasks in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from easel.api.auth import authenticate, bearer_token
from easel.api.deps import services_of
from easel.api.dialects.common import MAX_DEPTH, Dialect, nested_at_most
from easel.api.limits import BodyRefused, BodyTooLarge, read_body
from easel.api.openapi import BEARER, example, request_body, responses, security
from easel.api.openapi import ERRORS as OPENAPI_ERRORS
from easel.domain.errors import EaselError, ErrorKind, Throttled
from easel.domain.job import Job
from easel.domain.submission import Caller
from easel.runtime.process import Services
from easel.services.jobs.service import JobFailed, StillRunning, scoped_id

from .openapi import Envelope, tasks_schema
from .schemas import RunwareError, parse_image_inference, task_uuid
from .translate import (
    DIALECT,
    ERRORS,
    NAMES,
    TASK_TYPE,
    ReplyBudget,
    ack,
    from_easel,
    job_error,
    poll_items,
    refusal,
    report_delivery_failures,
    result_items,
    task_details,
    to_submission,
    webhook_body,
)

log = logging.getLogger(__name__)

SESSION_KEEP_SECONDS = 120.0  # undelivered results wait this long for a reconnecting client
# A half-open connection is found by WebSocket pings within about two ping intervals (uvicorn's
# ping interval plus its timeout); frames sent in that window may not have arrived.
UNCONFIRMED_SECONDS = 45.0


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


def _fail(error: RunwareError) -> Outcome:
    return Outcome(errors=[error])


# -- tasks (shared by both transports) ---------------------------------------------------------


async def run_task(
    services: Services, caller: Caller, task: Any, budget: ReplyBudget
) -> Outcome:
    """Any task except authentication; never raises. `budget` bounds the reply's image data."""
    task_type = task.get("taskType") if isinstance(task, dict) else None
    uuid_ = task.get("taskUUID") if isinstance(task, dict) else None
    uuid_ = uuid_ if isinstance(uuid_, str) else None
    try:
        if not isinstance(task, dict):
            raise RunwareError("invalidTask", "each task must be a JSON object", "task")
        if task_type == "ping":
            return Outcome(data=[{"taskType": "ping", "pong": True}])
        if task_type == TASK_TYPE:
            return await _image_inference(services, caller, task, budget)
        if task_type == "getResponse":
            return await _get_response(services, caller, task, budget)
        if task_type == "getTaskDetails":
            return await _get_task_details(services, caller, task)
        if task_type is None:
            raise RunwareError("missingTaskType", "taskType is required", "taskType")
        raise RunwareError(
            "invalidTaskType",
            f"taskType {str(task_type)[:64]!r} is not supported; use imageInference, "
            "getResponse, getTaskDetails, authentication or ping", "taskType",
        )
    except RunwareError as exc:
        return _fail(exc.for_task(_type_name(task_type), uuid_))
    except EaselError as exc:
        return _fail(from_easel(exc).for_task(_type_name(task_type), uuid_))
    except Exception:
        log.exception("runware task failed unexpectedly")
        return _fail(RunwareError("internalServerError", "internal error", status=500,
                                  task_type=_type_name(task_type), task_uuid=uuid_))


def _type_name(task_type: Any) -> str | None:
    return task_type if isinstance(task_type, str) else None


async def _image_inference(
    services: Services, caller: Caller, task: dict[str, Any], budget: ReplyBudget
) -> Outcome:
    parsed = parse_image_inference(task)
    submission = to_submission(parsed, caller, task)
    if parsed.delivery_method == "async":
        job, _created = await services.jobs.submit(submission)
        return Outcome(data=[ack(job)])
    try:
        job = await services.jobs.run(submission, services.settings.sync_timeout)
    except JobFailed as exc:
        return _fail(job_error(exc.job))
    except StillRunning:
        raise RunwareError(
            ERRORS.code(ErrorKind.TIMEOUT),
            "the task did not finish in time; use deliveryMethod async", status=504,
        ) from None
    return Outcome(data=await result_items(job, services.artifacts, with_status=False,
                                           budget=budget))


async def _polled_job(services: Services, caller: Caller, task: dict[str, Any]) -> Job:
    """The caller's task a getResponse or getTaskDetails names (polls spend the rate budget)."""
    uuid_ = task_uuid(task)
    services.jobs.check_poll(caller)
    job = await services.jobs.get(scoped_id(caller, DIALECT, uuid_), caller)
    if job is None:
        raise RunwareError(ERRORS.code(ErrorKind.NOT_FOUND), f"no task {uuid_}",
                           NAMES("task_id"), status=404)
    return job


async def _poll_outcome(
    services: Services, job: Job, budget: ReplyBudget | None,
    output_types: list[str] | None = None,
) -> Outcome:
    """What a poll of `job` answers: its error, or every image with finally failed
    deliveries marked."""
    if job.error is not None:
        return _fail(job_error(job))
    items = await poll_items(job, services.artifacts, budget, output_types)
    if job.status.terminal:
        report_delivery_failures(items, await services.jobs.delivery_failures(job.id))
    return Outcome(data=items)


async def _get_response(
    services: Services, caller: Caller, task: dict[str, Any], budget: ReplyBudget
) -> Outcome:
    return await _poll_outcome(services, await _polled_job(services, caller, task), budget)


async def _get_task_details(
    services: Services, caller: Caller, task: dict[str, Any]
) -> Outcome:
    """The task as sent and what a poll answers now, with image URLs rather than base64 data:
    the details are one item, which base64 images would make too large for a WebSocket frame
    (getResponse returns the data, one image per frame)."""
    job = await _polled_job(services, caller, task)
    response = await _poll_outcome(services, job, None, output_types=["URL"])
    return Outcome(data=[task_details(job, response.envelope())])


def _parse_frame(raw: str | bytes, max_tasks: int) -> list[Any]:
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
        if _is_poll(task) and isinstance(task.get("taskUUID"), str):
            key = task["taskUUID"].lower()
            if key in seen:
                continue
            seen.add(key)
        out.append(task)
    return out


def _is_auth(task: Any) -> bool:
    return isinstance(task, dict) and task.get("taskType") == "authentication"


def _is_poll(task: Any) -> bool:
    return isinstance(task, dict) and task.get("taskType") == "getResponse"


def _auth_error(key: Any) -> RunwareError:
    if not key:
        return RunwareError("missingApiKey", "an API key is required", "apiKey", status=401,
                            task_type="authentication")
    return RunwareError("invalidApiKey", "invalid API key", "apiKey", status=401,
                        task_type="authentication")


# -- REST -----------------------------------------------------------------------------------


async def rest(request: Request) -> JSONResponse:
    services = services_of(request)
    settings = services.settings
    try:
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout)
        tasks = _parse_frame(body, settings.max_tasks_per_request)
    except BodyTooLarge as exc:
        return _reply(_fail(RunwareError("payloadTooLarge", str(exc), "body", status=413)))
    except BodyRefused as exc:
        return _reply(_fail(RunwareError(exc.code, exc.message, exc.parameter,
                                         status=exc.status)))
    except RunwareError as exc:
        return _reply(_fail(exc))
    key = bearer_token(request.headers.get("authorization"))
    for task in tasks:
        if _is_auth(task) and key is None:
            key = task.get("apiKey") if isinstance(task.get("apiKey"), str) else ""
    caller = authenticate(services, request, key)
    if caller is None:
        return _reply(_fail(_auth_error(key)))
    # Polls run after the batch's submissions, so a getResponse may follow its own task.
    budget = ReplyBudget(settings.max_reply_bytes)
    first = [t for t in tasks if not _is_auth(t) and not _is_poll(t)]
    outcomes = list(await asyncio.gather(*(run_task(services, caller, t, budget)
                                           for t in first)))
    polls = [t for t in tasks if _is_poll(t)]
    outcomes += await asyncio.gather(*(run_task(services, caller, t, budget) for t in polls))
    merged = Outcome()
    for outcome in outcomes:
        merged.data.extend(outcome.data)
        merged.errors.extend(outcome.errors)
    return _reply(merged)


def _reply(outcome: Outcome) -> JSONResponse:
    """200 when anything succeeded; otherwise the status of the first error. A refusal that
    says when to come back sets Retry-After."""
    status = 200 if outcome.data or not outcome.errors else outcome.errors[0].status
    waits = [e.retry_after for e in outcome.errors if e.retry_after is not None]
    headers = {"Retry-After": str(max(waits))} if waits else None
    return JSONResponse(outcome.envelope(), status_code=status, headers=headers)


# -- WebSocket ------------------------------------------------------------------------------


def ws_frames(outcome: Outcome, limit: int, progressive: bool) -> list[dict[str, Any]]:
    """The frames that carry one task's outcome over a WebSocket. Results of an imageInference
    go one image per frame, as Runware sends them; any reply goes item by item when it would
    pass `limit` (the SDKs keep the websockets library's 1 MiB frame limit, and a larger frame
    kills their connection). An item too large for any frame becomes an error that says to ask
    for URL output."""
    whole = outcome.envelope()
    if not progressive and _frame_size(whole) <= limit:
        return [whole]
    frames: list[dict[str, Any]] = []
    if outcome.errors:
        frames.append({"errors": [e.to_dict() for e in outcome.errors]})
    for item in outcome.data:
        frame = {"data": [item]}
        if _frame_size(frame) > limit:
            frame = {"errors": [_too_large(item, _frame_size(frame), limit).to_dict()]}
        frames.append(frame)
    return frames or [whole]


def _frame_size(frame: dict[str, Any]) -> int:
    return len(json.dumps(frame))  # ASCII: json.dumps escapes everything else


def _too_large(item: dict[str, Any], size: int, limit: int) -> RunwareError:
    image = item.get("imageUUID", "")
    return RunwareError(
        "responseTooLarge",
        f"image {image} needs a {size}-byte WebSocket frame, more than {limit} bytes (the "
        "SDKs' frame limit); ask for outputType URL, or a smaller outputFormat",
        "outputType", status=413, task_type=item.get("taskType"), task_uuid=item.get("taskUUID"))


class Session:
    """A connectionSessionUUID and what it could not deliver while disconnected."""

    def __init__(self, owner: str) -> None:
        self.id = str(uuid.uuid4())
        self.owner = owner  # the principal that opened it
        self.socket: WebSocket | None = None
        self.pending: list[tuple[float, str]] = []  # frames for a socket that is gone
        self.sent: list[tuple[float, str]] = []  # recently sent, not known to have arrived
        self.detached_at: float | None = None
        self.detached_from: float | None = None  # when the last connection was found gone
        self.in_flight = 0
        self.lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        async with self.lock:
            now = time.monotonic()
            if self.socket is not None:
                try:
                    await self.socket.send_text(text)
                    # Sent is not received: on a half-open connection the frame sits in a
                    # buffer nobody reads. Kept until pings would have found such a connection.
                    self.sent = [(at, t) for at, t in self.sent if at >= now - UNCONFIRMED_SECONDS]
                    self.sent.append((now, text))
                    return
                except Exception:  # the client went away mid-send: keep it for a reconnect
                    self.socket = None
                    self.detached_at = now
            self.pending.append((now, text))

    async def attach(
        self, socket: WebSocket, greeting: dict[str, Any], resumed: bool = False
    ) -> None:
        """Send the authentication reply, then whatever waited for this session."""
        async with self.lock:
            await socket.send_text(json.dumps(greeting))
            self.socket = socket
            self.detached_at = None
            keep_from = time.monotonic() - SESSION_KEEP_SECONDS
            backlog = [text for at, text in self.pending if at >= keep_from]
            if resumed and self.detached_from is not None:
                # Frames sent shortly before the old connection was found dead may never have
                # arrived: send them again (a client that did get them sees a repeat).
                since = self.detached_from - UNCONFIRMED_SECONDS
                backlog = [text for at, text in self.sent if at >= since] + backlog
            self.sent = []
            self.pending = []
            for text in backlog:
                await socket.send_text(text)

    async def detach(self, socket: WebSocket) -> None:
        async with self.lock:
            if self.socket is socket:
                self.socket = None
                self.detached_at = self.detached_from = time.monotonic()


class Sessions:
    def __init__(self) -> None:
        self.by_id: dict[str, Session] = {}

    def open(self, resume: Any, owner: Caller) -> Session:
        self._forget_stale()
        if isinstance(resume, str) and resume in self.by_id:
            found = self.by_id[resume]
            if found.owner == owner.principal:  # another key never takes a session over
                return found
        session = Session(owner.principal)
        self.by_id[session.id] = session
        return session

    def _forget_stale(self) -> None:
        cutoff = time.monotonic() - SESSION_KEEP_SECONDS
        for sid, s in list(self.by_id.items()):
            if s.detached_at is not None and s.detached_at < cutoff and s.in_flight == 0:
                del self.by_id[sid]


def make_websocket(sessions: Sessions) -> Any:
    open_sockets: set[WebSocket] = set()

    async def websocket(socket: WebSocket) -> None:
        services = services_of(socket)
        if len(open_sockets) >= services.settings.max_websockets:
            await socket.close(code=1013)  # try again later: this process has enough sockets
            return
        open_sockets.add(socket)
        try:
            await socket.accept()
            connection = _Connection(services, sessions, socket)
            await connection.serve()
        finally:
            open_sockets.discard(socket)

    return websocket


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
    """Runware's dialect, with its own WebSocket sessions (one registry per app)."""
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
    return Dialect(DIALECT, router, ERRORS, (), refusal, webhook_body, exact=("/v1", "/v1/"))


class _Connection:
    """One WebSocket connection; the Session outlives it when the client reconnects."""

    def __init__(self, services: Services, sessions: Sessions, socket: WebSocket) -> None:
        self.services = services
        self.sessions = sessions
        self.socket = socket
        self.session: Session | None = None
        self.caller: Caller | None = None
        self.key: str | None = None  # the key it authenticated with: checked again per frame
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def serve(self) -> None:
        settings = self.services.settings
        try:
            while not self.closed:
                # With keys required, a socket that never authenticates is closed.
                waiting = self.caller is None and self._keys_required()
                try:
                    async with asyncio.timeout(settings.ws_auth_timeout if waiting else None):
                        message = await self.socket.receive()
                except TimeoutError:
                    await self.socket.close(code=4401, reason="authenticate first")
                    break
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") or message.get("bytes") or ""
                await self.frame(raw)
        except WebSocketDisconnect:
            pass
        finally:
            await self.close()

    async def frame(self, raw: str | bytes) -> None:
        settings = self.services.settings
        try:
            size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
            if size > settings.max_body_bytes:
                raise RunwareError("payloadTooLarge", f"frame is larger than "
                                   f"{settings.max_body_bytes} bytes", "body", status=413)
            tasks = _parse_frame(raw, settings.max_tasks_per_request)
        except RunwareError as exc:
            await self.send(_fail(exc).envelope())
            return
        try:
            await self._run_frame(tasks)
        except Throttled as exc:  # keys cannot be checked now (the database is down)
            await self.send(_fail(RunwareError("serviceUnavailable", exc.message, status=503,
                                               retry_after=exc.retry_after)).envelope())

    def _keys_required(self) -> bool:
        try:
            return self.services.keys.required()
        except Throttled:  # cannot tell now: as if required (fail closed)
            return True

    async def _run_frame(self, tasks: list[Any]) -> None:
        if self.key is not None and not await self._key_still_valid():
            return
        for task in tasks:
            if _is_auth(task):
                await self.authenticate(task)
            elif self.caller is None and self._anonymous() is None:
                await self.send(_fail(_auth_error(None).for_task(
                    _type_name(task.get("taskType") if isinstance(task, dict) else None), None
                )).envelope())
            else:
                self.start(task)

    async def _key_still_valid(self) -> bool:
        """A key revoked while the socket is open stops working within the key cache."""
        if authenticate(self.services, self.socket, self.key) is not None:
            return True
        await self.send(_fail(_auth_error(self.key)).envelope())
        self.caller = None
        self.closed = True
        with contextlib.suppress(Exception):
            await self.socket.close(code=4401, reason="the API key is no longer valid")
        return False

    def _anonymous(self) -> Caller | None:
        """With no keys configured, a socket may send tasks without authenticating first."""
        self.caller = authenticate(self.services, self.socket, None)
        return self.caller

    async def authenticate(self, task: dict[str, Any]) -> None:
        key = task.get("apiKey")
        caller = authenticate(self.services, self.socket, key if isinstance(key, str) else None)
        if caller is None:
            await self.send(_fail(_auth_error(key)).envelope())
            return
        self.caller = caller
        self.key = key if isinstance(key, str) and key else None
        if self.session is not None:
            await self.session.detach(self.socket)
        resume = task.get("connectionSessionUUID")
        self.session = self.sessions.open(resume, caller)
        reply = {"data": [{"taskType": "authentication",
                           "connectionSessionUUID": self.session.id}]}
        await self.session.attach(self.socket, reply, resumed=self.session.id == resume)

    def start(self, task: Any) -> None:
        if self.session is None:  # no keys configured: an implicit session
            assert self.caller is not None
            self.session = self.sessions.open(None, self.caller)
            self.session.socket = self.socket
        session = self.session
        session.in_flight += 1
        job = asyncio.create_task(self._run(session, task))
        self.tasks.add(job)
        job.add_done_callback(self.tasks.discard)

    async def _run(self, session: Session, task: Any) -> None:
        try:
            assert self.caller is not None  # frame() authenticated or named the socket first
            budget = ReplyBudget(self.services.settings.max_reply_bytes)
            outcome = await run_task(self.services, self.caller, task, budget)
            progressive = isinstance(task, dict) and task.get("taskType") == TASK_TYPE
            for frame in ws_frames(outcome, self.services.settings.ws_max_frame_bytes,
                                   progressive):
                await session.send(frame)
        finally:
            session.in_flight -= 1

    async def send(self, frame: dict[str, Any]) -> None:
        if self.session is not None:
            await self.session.send(frame)
            return
        with contextlib.suppress(Exception):
            await self.socket.send_text(json.dumps(frame))

    async def close(self) -> None:
        # In-flight tasks keep running: their results go to the session's buffer.
        if self.session is not None:
            await self.session.detach(self.socket)
