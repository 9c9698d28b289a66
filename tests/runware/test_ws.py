"""Runware's WebSocket on a real server: a socket outlives uvicorn's header deadline. Sessions,
ping, errors and resume are tested in-process (tests/edge/test_runware_ws.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


async def _recv(ws: Any, timeout: float = 60) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def _auth(ws: Any, session: str | None = None) -> str:
    task: dict[str, Any] = {"taskType": "authentication", "apiKey": "k"}
    if session:
        task["connectionSessionUUID"] = session
    await ws.send(json.dumps([task]))
    reply = await _recv(ws)
    return str(reply["data"][0]["connectionSessionUUID"])


async def test_a_websocket_outlives_the_header_deadline(make_server: Any) -> None:
    """The deadline for request headers stops at the upgrade: an open WebSocket is the
    WebSocket's, however long it lives (a long sync task must not lose its connection)."""
    srv = make_server("ws-long", EASEL_HEADER_TIMEOUT=1).start()
    async with websockets.connect(srv.ws_url) as ws:
        await _auth(ws)
        await asyncio.sleep(3)  # three header deadlines
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert await _recv(ws, 10) == {"data": [{"taskType": "ping", "pong": True}]}
