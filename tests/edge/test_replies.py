"""Replies in flight (issue #30), in-process: the bytes of a caller's base64 replies are
reserved before each reply is built and released once it has gone, or its client has; a caller
over its bound is refused in its dialect's own error shape (429, Retry-After) and other callers
are not. The attack itself, on a real server with sockets that never read, is
tests/security/test_unread_replies.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from easel.api.replies import (
    PacedReplies,
    RepliesInFlight,
    RepliesOverBudget,
    ReplyLimits,
    hold_of,
)
from tests.edge.conftest import KEY, Edge
from tests.edge.test_runware_ws import _auth
from tests.fakes import FakeEngine
from tests.server_harness import inference
from tests.wire import WIRES, Wire

OTHER_KEY = "other-key"
# What asks each dialect for base64 images, and how it names a refusal for too many bytes.
BASE64 = {
    "runware": ({"outputType": "base64Data"}, "rateLimitExceeded", "outputType"),
    "wavespeed": ({"enable_base64_output": True}, "429", None),
    "openai": ({"response_format": "b64_json"}, "rate_limit_exceeded", "response_format"),
    "google": ({}, "RESOURCE_EXHAUSTED", None),
    "google-vertex": ({}, "RESOURCE_EXHAUSTED", None),
}


def ledger(edge: Edge) -> RepliesInFlight:
    replies: RepliesInFlight = edge.server.app.state.replies
    return replies


def principal(edge: Edge, key: str = KEY) -> str:
    caller = edge.server.runtime.core.caller(key, "testclient")
    assert caller is not None
    return caller.principal


@pytest.mark.parametrize("wire", [w for w in WIRES if w.name in BASE64], ids=lambda w: w.name)
def test_a_caller_over_its_bound_is_refused_in_its_dialects_shape(
    make_edge: Callable[..., Edge], wire: Wire,
) -> None:
    edge = make_edge(api_keys=[KEY, OTHER_KEY], reply_bytes_per_caller=1000)
    fields, code, parameter = BASE64[wire.name]
    replies = ledger(edge)
    unread = replies.reserve(principal(edge), 1)  # a reply of the caller's, not read yet
    refused = edge.send(wire.generate(KEY, **fields))
    error = wire.error(refused)
    assert (refused.status_code, error.code, error.parameter) == (429, code, parameter)
    assert refused.headers["retry-after"] == "1"
    assert "EASEL_REPLY_BYTES_PER_CALLER" in error.message
    assert replies.total == 1  # the refused reply holds nothing
    # Another caller is not held back by this one's unread replies.
    other = edge.send(wire.generate(OTHER_KEY, **fields))
    assert other.status_code == 200 and wire.images(other) == 1
    unread.release()  # read: the caller's next reply is sent
    sent = edge.send(wire.generate(KEY, **fields))
    assert sent.status_code == 200 and wire.images(sent) == 1
    assert replies.total == 0 and replies.by_caller == {}  # released once sent


def test_the_server_wide_bound_refuses_every_caller(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(api_keys=[KEY, OTHER_KEY], reply_bytes_total=1000)
    ledger(edge).reserve(principal(edge, OTHER_KEY), 1)
    wire = WIRES[1]  # WaveSpeed
    refused = edge.send(wire.generate(KEY, enable_base64_output=True))
    assert refused.status_code == 429 and "EASEL_REPLY_BYTES_TOTAL" in wire.error(refused).message
    # URLs cost nothing of the bound.
    assert edge.send(wire.generate(KEY)).status_code == 200


def test_a_websocket_task_over_the_bound_gets_a_429_frame(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(reply_bytes_per_caller=1000)
    replies = ledger(edge)
    with edge.client.websocket_connect("/v1") as ws:
        _auth(ws)
        unread = replies.reserve(principal(edge), 1)
        ws.send_text(json.dumps([inference(outputType="base64Data")]))
        error = ws.receive_json()["errors"][0]
        assert (error["code"], error["parameter"]) == ("rateLimitExceeded", "outputType")
        assert "EASEL_REPLY_BYTES_PER_CALLER" in error["message"]
        unread.release()
        ws.send_text(json.dumps([inference(outputType="base64Data")]))
        assert ws.receive_json()["data"][0]["imageBase64Data"]
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        assert ws.receive_json()["data"][0]["pong"]  # handled after the task's end
        assert replies.total == 0


def test_frames_kept_for_a_reconnect_hold_their_bytes_until_sent(
    make_edge: Callable[..., Edge],
) -> None:
    gate = threading.Event()  # the job ends only once its client has gone
    edge = make_edge(FakeEngine(on_step=lambda _batch, _step: gate.wait(30)))
    replies, owner = ledger(edge), principal(edge)
    task = inference(outputType="base64Data", numberResults=2)
    with edge.client.websocket_connect("/v1") as ws:
        session = _auth(ws)
        ws.send_text(json.dumps([task]))
    gate.set()
    edge.settle(task["taskUUID"])
    deadline = time.monotonic() + 30
    while replies.held_by(owner) == 0:  # the frames wait for the session, reserved
        assert time.monotonic() < deadline, "the kept frames were never reserved"
        time.sleep(0.01)
    with edge.client.websocket_connect("/v1") as ws:
        assert _auth(ws, session) == session
        frames = [ws.receive_json(), ws.receive_json()]
        assert all(frame["data"][0]["imageBase64Data"] for frame in frames)
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        ws.receive_json()
    assert replies.total == 0  # sent: released


# -- the ledger and the middleware, alone -------------------------------------------------


def test_the_ledger_bounds_each_caller_and_the_whole() -> None:
    replies = RepliesInFlight(ReplyLimits(per_caller=100, total=150))
    first = replies.reserve("a", 500)  # alone in flight: always allowed, however large
    with pytest.raises(RepliesOverBudget, match="EASEL_REPLY_BYTES_PER_CALLER"):
        replies.reserve("a", 1, "outputType")
    with pytest.raises(RepliesOverBudget, match="EASEL_REPLY_BYTES_TOTAL"):
        replies.reserve("b", 1)
    first.release()
    first.release()  # once only
    assert (replies.total, replies.by_caller) == (0, {})
    b = replies.reserve("b", 90)
    with pytest.raises(RepliesOverBudget) as refused:
        replies.reserve("b", 20, "outputType", "or ask for outputType URL")
    assert refused.value.retry_after == 1 and refused.value.parameter == "outputType"
    assert refused.value.message.endswith("or ask for outputType URL")
    replies.reserve("c", 60)
    assert replies.total == 150
    b.release()
    assert replies.by_caller == {"c": 60}


BODY = 300_000


def app_sending(size: int) -> Any:
    """An ASGI app that reserves its reply's bytes, then sends the reply as one message."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        hold_of(HTTPConnection(scope)).reserve("caller", size)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        await send({"type": "http.response.body", "body": b"x" * size})

    return app


def drive(paced: PacedReplies, send: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    asyncio.run(paced({"type": "http", "state": {}}, receive, send))


def test_a_reply_goes_out_in_chunks_and_its_bytes_are_released() -> None:
    replies = RepliesInFlight(ReplyLimits(per_caller=1 << 20, total=1 << 20))
    chunks: list[tuple[int, bool]] = []
    held: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append((len(message["body"]), message["more_body"]))
            held.append(replies.total)

    drive(PacedReplies(app_sending(BODY), replies), send)
    assert sum(size for size, _ in chunks) == BODY
    assert max(size for size, _ in chunks) == 64 * 1024
    assert [more for _, more in chunks] == [True] * (len(chunks) - 1) + [False]
    assert set(held) == {BODY} and replies.total == 0  # reserved while sent, then released


def test_a_reply_whose_client_is_gone_releases_its_bytes() -> None:
    replies = RepliesInFlight(ReplyLimits(per_caller=1 << 20, total=1 << 20))
    sent = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += 1
            if sent == 2:
                raise OSError("the client went away")

    with pytest.raises(OSError):
        drive(PacedReplies(app_sending(BODY), replies), send)
    assert sent == 2 and replies.total == 0


def test_frames_kept_for_a_resend_are_bounded_over_every_session() -> None:
    """Frames sent but not known to have arrived are kept for a resend, within one bound for
    the whole process: sockets that never read cannot each keep a caller's whole budget."""
    from easel.api.dialects.runware.sessions import Retained, Session

    ledger = RepliesInFlight(ReplyLimits(per_caller=1000, total=10_000))
    retained = Retained(limit=1500)
    sessions = [Session(f"key:{i}", ledger, retained) for i in range(4)]
    now = time.monotonic()
    for session in sessions:
        for _ in range(3):
            session._sent(now, "x" * 400)
    kept = [sum(len(text) for _, text in s.sent) for s in sessions]
    assert kept[0] == 800  # its own bound (1000) holds two frames of 400
    assert sum(kept) <= 1500 and retained.held == sum(kept), kept
    assert kept[-1] == 0  # nothing left for the last: it resends nothing, getResponse has all
    sessions[0].forget()
    assert retained.held == sum(kept[1:])
