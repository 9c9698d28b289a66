"""Runware WebSocket on /v1: sessions, ping, many tasks in flight, errors, resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.server_harness import Server, inference


async def _recv(ws: Any, timeout: float = 60) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def _auth(ws: Any, session: str | None = None) -> str:
    task: dict[str, Any] = {"taskType": "authentication", "apiKey": "k"}
    if session:
        task["connectionSessionUUID"] = session
    await ws.send(json.dumps([task]))
    reply = await _recv(ws)
    return str(reply["data"][0]["connectionSessionUUID"])


async def test_session_ping_and_many_tasks_in_flight(server: Server) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await _auth(ws)
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert await _recv(ws) == {"data": [{"taskType": "ping", "pong": True}]}
        tasks = [inference(numberResults=2), inference(), inference(numberResults=3)]
        await ws.send(json.dumps(tasks))
        await ws.send("{broken json")  # must not end the session or the tasks in flight
        await ws.send(json.dumps([inference(width=1)]))
        got: dict[str, list[dict[str, Any]]] = {}
        errors = []
        # Results come one image per frame, as Runware sends them.
        while sum(len(v) for v in got.values()) < 6 or len(errors) < 2:
            frame = await _recv(ws)
            errors += frame.get("errors", [])
            for item in frame.get("data", []):
                got.setdefault(item["taskUUID"], []).append(item)
        expected = {t["taskUUID"]: t.get("numberResults", 1) for t in tasks}
        assert expected == {k: len(v) for k, v in got.items()}
        assert sorted(e["code"] for e in errors) == ["invalidJSON", "invalidWidth"]


async def test_results_are_kept_for_a_reconnecting_session(server: Server) -> None:
    task = inference(numberResults=2)
    async with websockets.connect(server.ws_url) as ws:
        session = await _auth(ws)
        await ws.send(json.dumps([task]))
    # Disconnected before the result: it waits in the session's buffer.
    await asyncio.sleep(2.0)
    async with websockets.connect(server.ws_url + "/") as ws:
        assert await _auth(ws, session) == session
        frames = [await _recv(ws), await _recv(ws)]  # one image per frame
        assert [i["taskUUID"] for f in frames for i in f["data"]] == [task["taskUUID"]] * 2


async def test_bad_key_gets_an_authentication_error(make_server: Any) -> None:
    srv = make_server(EASEL_API_KEYS="secret").start()
    async with websockets.connect(srv.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "wrong"}]))
        error = (await _recv(ws))["errors"][0]
        assert error["code"] == "invalidApiKey" and error["taskType"] == "authentication"
        await ws.send(json.dumps([inference()]))
        assert (await _recv(ws))["errors"][0]["code"] == "missingApiKey"
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "secret"}]))
        assert (await _recv(ws))["data"][0]["connectionSessionUUID"]


async def test_a_websocket_outlives_the_header_deadline(make_server: Any) -> None:
    """The deadline for request headers stops at the upgrade: an open WebSocket is the
    WebSocket's, however long it lives (a long sync task must not lose its connection)."""
    srv = make_server("ws-long", EASEL_HEADER_TIMEOUT=1).start()
    async with websockets.connect(srv.ws_url) as ws:
        await _auth(ws)
        await asyncio.sleep(3)  # three header deadlines
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert await _recv(ws, 10) == {"data": [{"taskType": "ping", "pong": True}]}
