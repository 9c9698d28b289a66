"""Runware's WebSocket: sessions (a connectionSessionUUID) that outlive a connection, so a
client that reconnects gets what finished while it was away; frames of one image each, within
the SDKs' frame limit. Nothing a client sends can end a session that has tasks in flight.

What waits for a slow or absent reader is bounded by the caller's replies in flight
(api/replies.py): a task's base64 images are reserved before they are read and stay reserved
while its frames wait to be sent, or wait for a reconnect; a task past the bound gets a 429
error frame instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from easel.api.caller import port_of
from easel.api.replies import (
    RepliesInFlight,
    RepliesOverBudget,
    ReplyHold,
    Reservation,
    replies_of,
)
from easel.domain.errors import Throttled
from easel.domain.submission import Caller
from easel.services.port import Limits, Port

from .schemas import IMAGE_TASK_TYPES, RunwareError
from .tasks import Outcome, auth_error, failed, is_auth, parse_frame, run_task, type_name
from .translate import OVER_BUDGET_ADVICE, ReplyBudget, from_easel

SESSION_KEEP_SECONDS = 120.0  # undelivered results wait this long for a reconnecting client
# A half-open connection is found by WebSocket pings within about two ping intervals (uvicorn's
# ping interval plus its timeout); frames sent in that window may not have arrived.
UNCONFIRMED_SECONDS = 45.0
# Frames sent but not known to have arrived, kept for resends over all sessions (Retained).
RETAINED_BYTES = 64 * 1024 * 1024


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


def _bytes(frames: list[tuple[float, str]]) -> int:
    return sum(len(text) for _, text in frames)


def _frame_size(frame: dict[str, Any]) -> int:
    return len(json.dumps(frame))  # ASCII: json.dumps escapes everything else


def frame_limit(headers: Mapping[str, str], limits: Limits) -> int:
    """The largest frame this client takes. Runware's legacy Python SDK (`X-SDK-Name: python`,
    version 0.x) opens its socket without a size limit, so any image fits one frame (up to the
    reply bound); runware-sdk and other clients on the websockets library keep its 1 MiB limit,
    and an unknown client is given that too: a frame it cannot take kills its connection."""
    legacy = (headers.get("x-sdk-name", "").lower() == "python"
              and headers.get("x-sdk-version", "").startswith("0."))
    return max(limits.ws_max_frame_bytes, limits.max_reply_bytes) if legacy \
        else limits.ws_max_frame_bytes


def _too_large(item: dict[str, Any], size: int, limit: int) -> RunwareError:
    image = item.get("imageUUID", "")
    return RunwareError(
        "responseTooLarge",
        f"image {image} needs a {size}-byte WebSocket frame, more than {limit} bytes (this "
        "client's frame limit); ask for outputType URL, send the task over REST (runware-sdk: "
        "transport='rest'), or ask for a smaller outputFormat",
        "outputType", status=413, task_type=item.get("taskType"), task_uuid=item.get("taskUUID"))


class Pending:
    """A frame kept for a reconnect, its bytes reserved for the session's owner meanwhile."""

    def __init__(self, at: float, text: str, reservation: Reservation | None) -> None:
        self.at = at
        self.text = text
        self.reservation = reservation

    def release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()


class Retained:
    """The bytes of frames sent but not known to have arrived, kept for a resend, over every
    session of the process. A resend is a courtesy (getResponse has every result), so past the
    bound a session keeps fewer instead of the process holding more (sockets that never read
    could otherwise each keep a caller's whole bound)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class Session:
    """A connectionSessionUUID and what it could not deliver while disconnected."""

    def __init__(self, owner: str, replies: RepliesInFlight,
                 retained: Retained | None = None) -> None:
        self.id = str(uuid.uuid4())
        self.owner = owner  # the principal that opened it
        self.replies = replies
        self.socket: WebSocket | None = None
        self.pending: list[Pending] = []  # frames for a socket that is gone
        self.sent: list[tuple[float, str]] = []  # recently sent, not known to have arrived
        self.retained = retained or Retained(replies.limits.per_caller)
        self.detached_at: float | None = None
        self.detached_from: float | None = None  # when the last connection was found gone
        self.in_flight = 0
        self.lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any], reserved: int = 0) -> None:
        """`reserved`: bytes the frame's task holds already (in its ReplyHold), which a frame
        kept for a reconnect takes over."""
        text = json.dumps(frame)
        async with self.lock:
            now = time.monotonic()
            if self.socket is not None:
                try:
                    await self.socket.send_text(text)
                    self._sent(now, text)
                    return
                except Exception:  # the client went away mid-send: keep it for a reconnect
                    self.socket = None
                    self.detached_at = now
            self.pending.append(self._kept(now, frame, text, reserved))

    def _sent(self, now: float, text: str) -> None:
        """Sent is not received: on a half-open connection the frame sits in a buffer nobody
        reads. Kept until pings would have found such a connection, the newest frames up to
        the caller's bound on replies in flight (older ones are left to getResponse)."""
        others = self.retained.held - _bytes(self.sent)  # what the other sessions keep
        room = min(self.replies.limits.per_caller, self.retained.limit - others)
        kept: list[tuple[float, str]] = []
        for at, earlier in reversed([*self.sent, (now, text)]):
            room -= len(earlier)
            if at < now - UNCONFIRMED_SECONDS or room < 0:
                break
            kept.append((at, earlier))
        self._keep_sent(list(reversed(kept)))

    def _keep_sent(self, frames: list[tuple[float, str]]) -> None:
        self.retained.held += _bytes(frames) - _bytes(self.sent)
        self.sent = frames

    def _kept(self, now: float, frame: dict[str, Any], text: str, reserved: int) -> Pending:
        """A frame waits for a reconnect in the owner's bytes in flight; past the owner's bound
        (or the server's), a short error in its place says to poll the task instead."""
        try:
            reservation = self.replies.reserve(self.owner, len(text), "outputType",
                                               OVER_BUDGET_ADVICE, own=reserved)
        except RepliesOverBudget as exc:
            text = json.dumps({"errors": [e.to_dict() for e in _not_kept(frame, exc)]})
            return Pending(now, text, None)
        return Pending(now, text, reservation)

    def forget(self) -> None:
        """Let go of the frames kept for a reconnect that did not come."""
        for kept in self.pending:
            kept.release()
        self.pending = []
        self._keep_sent([])

    async def attach(
        self, socket: WebSocket, greeting: dict[str, Any], resumed: bool = False
    ) -> None:
        """Send the authentication reply, then whatever waited for this session."""
        async with self.lock:
            await socket.send_text(json.dumps(greeting))
            self.socket = socket
            self.detached_at = None
            keep_from = time.monotonic() - SESSION_KEEP_SECONDS
            pending, self.pending = self.pending, []
            backlog = [kept.text for kept in pending if kept.at >= keep_from]
            if resumed and self.detached_from is not None:
                # Frames sent shortly before the old connection was found dead may never have
                # arrived: send them again (a client that did get them sees a repeat).
                since = self.detached_from - UNCONFIRMED_SECONDS
                backlog = [text for at, text in self.sent if at >= since] + backlog
            self._keep_sent([])
            try:
                for text in backlog:
                    await socket.send_text(text)
            finally:
                for kept in pending:
                    kept.release()

    async def detach(self, socket: WebSocket) -> None:
        async with self.lock:
            if self.socket is socket:
                self.socket = None
                self.detached_at = self.detached_from = time.monotonic()


def _not_kept(frame: dict[str, Any], exc: RepliesOverBudget) -> list[RunwareError]:
    """The errors that stand for a frame too large to keep for a reconnect: one per task."""
    items = frame.get("data") or frame.get("errors") or [{}]
    tasks = {(item.get("taskType"), item.get("taskUUID")) for item in items}
    return [RunwareError("rateLimitExceeded", f"{exc.message}; the result was not kept for a "
                         "reconnect: poll the task with getResponse", exc.parameter, status=429,
                         retry_after=exc.retry_after, task_type=task_type, task_uuid=task_uuid)
            for task_type, task_uuid in sorted(tasks, key=str)]


class Sessions:
    def __init__(self, retained_bytes: int = RETAINED_BYTES) -> None:
        self.by_id: dict[str, Session] = {}
        self.retained = Retained(retained_bytes)

    def open(self, resume: Any, owner: Caller, replies: RepliesInFlight) -> Session:
        self.forget_stale()
        if isinstance(resume, str) and resume in self.by_id:
            found = self.by_id[resume]
            if found.owner == owner.principal:  # another key never takes a session over
                return found
        session = Session(owner.principal, replies, self.retained)
        self.by_id[session.id] = session
        return session

    def forget_stale(self) -> None:
        """Sessions whose client has not come back within SESSION_KEEP_SECONDS, and what they
        kept for it (its bytes in flight are freed)."""
        cutoff = time.monotonic() - SESSION_KEEP_SECONDS
        for sid, s in list(self.by_id.items()):
            if s.detached_at is not None and s.detached_at < cutoff and s.in_flight == 0:
                s.forget()
                del self.by_id[sid]


def make_websocket(sessions: Sessions) -> Any:
    open_sockets: set[WebSocket] = set()

    async def websocket(socket: WebSocket) -> None:
        port = port_of(socket)
        if len(open_sockets) >= port.limits.max_websockets:
            await socket.close(code=1013)  # try again later: this process has enough sockets
            return
        open_sockets.add(socket)
        try:
            await socket.accept()
            connection = _Connection(port, sessions, socket)
            await connection.serve()
        finally:
            open_sockets.discard(socket)

    return websocket




def _greeting(session: Session) -> dict[str, Any]:
    return {"data": [{"taskType": "authentication", "connectionSessionUUID": session.id}]}


class _Connection:
    """One WebSocket connection; the Session outlives it when the client reconnects."""

    def __init__(self, port: Port, sessions: Sessions, socket: WebSocket) -> None:
        self.port = port
        self.sessions = sessions
        self.socket = socket
        self.session: Session | None = None
        self.caller: Caller | None = None
        self.key: str | None = None  # the key it authenticated with: checked again per frame
        self.frame_limit = frame_limit(socket.headers, port.limits)
        self.replies = replies_of(socket)
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def serve(self) -> None:
        limits = self.port.limits
        try:
            while not self.closed:
                # With keys required, a socket that never authenticates is closed.
                waiting = self.caller is None and self._keys_required()
                try:
                    async with asyncio.timeout(limits.ws_auth_timeout if waiting else None):
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
        limits = self.port.limits
        try:
            size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
            if size > limits.max_body_bytes:
                raise RunwareError("payloadTooLarge", f"frame is larger than "
                                   f"{limits.max_body_bytes} bytes", "body", status=413)
            tasks = parse_frame(raw, limits.max_tasks_per_request)
        except RunwareError as exc:
            await self.send(failed(exc).envelope())
            return
        try:
            await self._run_frame(tasks)
        except Throttled as exc:  # keys cannot be checked now (the database is down)
            await self.send(failed(RunwareError("serviceUnavailable", exc.message, status=503,
                                               retry_after=exc.retry_after)).envelope())

    def _keys_required(self) -> bool:
        try:
            return self.port.caller(None, self._address()) is None
        except Throttled:  # cannot tell now: as if required (fail closed)
            return True

    async def _run_frame(self, tasks: list[Any]) -> None:
        if self.key is not None and not await self._key_still_valid():
            return
        if self.key is None and self.caller is not None and self._caller(None) is None:
            # A socket opened while the server took no keys, and a key made since: from now
            # on it authenticates like any other (its next tasks are refused until it does).
            self.caller = None
        for task in tasks:
            if is_auth(task):
                await self.authenticate(task)
            elif self.caller is None and self._anonymous() is None:
                await self.send(failed(auth_error(None).for_task(
                    type_name(task.get("taskType") if isinstance(task, dict) else None), None
                )).envelope())
            else:
                self.start(task)

    async def _key_still_valid(self) -> bool:
        """A key revoked while the socket is open stops working within the key cache."""
        if self._caller(self.key) is not None:
            return True
        await self.send(failed(auth_error(self.key)).envelope())
        self.caller = None
        self.closed = True
        with contextlib.suppress(Exception):
            await self.socket.close(code=4401, reason="the API key is no longer valid")
        return False

    def _address(self) -> str:
        return self.socket.client.host if self.socket.client else "unknown"

    def _caller(self, key: str | None) -> Caller | None:
        return self.port.caller(key, self._address())

    def _anonymous(self) -> Caller | None:
        """With no keys configured, a socket may send tasks without authenticating first."""
        self.caller = self._caller(None)
        return self.caller

    async def authenticate(self, task: dict[str, Any]) -> None:
        key = task.get("apiKey")
        caller = self._caller(key if isinstance(key, str) else None)
        if caller is None:
            await self.send(failed(auth_error(key)).envelope())
            return
        try:  # each opens a session, kept for a reconnecting client: not for free
            self.port.spend_rate_budget(caller)
        except Throttled as over_budget:
            await self.send(failed(from_easel(over_budget).for_task(
                "authentication", None)).envelope())
            return
        self.caller = caller
        self.key = key if isinstance(key, str) and key else None
        resume = task.get("connectionSessionUUID")
        current = self.session
        if current is not None and current.owner == caller.principal and resume in (
                None, current.id):
            # Authenticating again on this socket (a frame that starts with authentication, as
            # a REST call does): the session stays, so the tasks in flight on it answer here.
            await current.send(_greeting(current))
            return
        if current is not None:
            await current.detach(self.socket)
        self.session = self.sessions.open(resume, caller, self.replies)
        await self.session.attach(self.socket, _greeting(self.session),
                                  resumed=self.session.id == resume)

    def start(self, task: Any) -> None:
        if self.session is None:  # no keys configured: an implicit session
            assert self.caller is not None
            self.session = self.sessions.open(None, self.caller, self.replies)
            self.session.socket = self.socket
        session = self.session
        session.in_flight += 1
        job = asyncio.create_task(self._run(session, task))
        self.tasks.add(job)
        job.add_done_callback(self.tasks.discard)

    async def _run(self, session: Session, task: Any) -> None:
        # The task's base64 images stay reserved for the caller until its frames are sent (or
        # kept for a reconnect, which reserves them again).
        held = ReplyHold(self.replies)
        try:
            assert self.caller is not None  # frame() authenticated or named the socket first
            principal = self.caller.principal
            budget = ReplyBudget(self.port.limits.max_reply_bytes, lambda size: held.reserve(
                principal, size, "outputType", OVER_BUDGET_ADVICE))
            outcome = await run_task(self.port, self.caller, task, budget)
            progressive = isinstance(task, dict) and task.get("taskType") in IMAGE_TASK_TYPES
            for frame in ws_frames(outcome, self.frame_limit, progressive):
                await session.send(frame, held.size)
        finally:
            held.release()
            session.in_flight -= 1
            self.sessions.forget_stale()

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
