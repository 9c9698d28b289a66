"""Runware's WebSocket on /v1, in-process (Starlette's test client): sessions, ping, many tasks
in flight, errors that do not end the session, results kept for a client that reconnects, keys.
The socket's life past uvicorn's header deadline is a real server's (tests/runware)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.testclient import WebSocketTestSession

from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference


def _auth(ws: WebSocketTestSession, session: str | None = None, key: str = KEY) -> str:
    task: dict[str, Any] = {"taskType": "authentication", "apiKey": key}
    if session:
        task["connectionSessionUUID"] = session
    ws.send_text(json.dumps([task]))
    return str(ws.receive_json()["data"][0]["connectionSessionUUID"])


def test_session_ping_and_many_tasks_in_flight(edge: Edge) -> None:
    with edge.client.websocket_connect("/v1") as ws:
        _auth(ws)
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        assert ws.receive_json() == {"data": [{"taskType": "ping", "pong": True}]}
        tasks = [inference(numberResults=2), inference(), inference(numberResults=3)]
        ws.send_text(json.dumps(tasks))
        ws.send_text("{broken json")  # must not end the session or the tasks in flight
        ws.send_text(json.dumps([inference(width=1)]))
        got: dict[str, list[dict[str, Any]]] = {}
        errors = []
        # Results come one image per frame, as Runware sends them.
        while sum(len(v) for v in got.values()) < 6 or len(errors) < 2:
            frame = ws.receive_json()
            errors += frame.get("errors", [])
            for item in frame.get("data", []):
                got.setdefault(item["taskUUID"], []).append(item)
        expected = {t["taskUUID"]: t.get("numberResults", 1) for t in tasks}
        assert expected == {k: len(v) for k, v in got.items()}
        assert sorted(e["code"] for e in errors) == ["invalidJSON", "invalidWidth"]


def test_results_are_kept_for_a_reconnecting_session(edge: Edge) -> None:
    task = inference(numberResults=2)
    with edge.client.websocket_connect("/v1") as ws:
        session = _auth(ws)
        ws.send_text(json.dumps([task]))
        edge.settle(task["taskUUID"])  # the job ends; its frames wait for the socket
    # Disconnected before reading the result: it waits in the session's buffer.
    with edge.client.websocket_connect("/v1/") as ws:
        assert _auth(ws, session) == session
        frames = [ws.receive_json(), ws.receive_json()]  # one image per frame
        assert [i["taskUUID"] for f in frames for i in f["data"]] == [task["taskUUID"]] * 2


def test_bad_key_gets_an_authentication_error(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(api_keys=["secret"])
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": "wrong"}]))
        error = ws.receive_json()["errors"][0]
        assert error["code"] == "invalidApiKey" and error["taskType"] == "authentication"
        ws.send_text(json.dumps([inference()]))
        assert ws.receive_json()["errors"][0]["code"] == "missingApiKey"
        assert _auth(ws, key="secret")


def test_authenticating_again_keeps_the_session_and_its_tasks_in_flight(edge: Edge) -> None:
    """A frame that starts with authentication, as REST calls are written: every task sent on
    the socket answers on it (a second authentication opened a new session, and the earlier
    tasks' results waited for a reconnect that never came)."""
    tasks = [inference(), inference(), inference()]
    with edge.client.websocket_connect("/v1") as ws:
        sessions = set()
        for task in tasks:
            ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": KEY}, task]))
        got = set()
        while len(got) < len(tasks):
            frame = ws.receive_json()
            for item in frame["data"]:
                if item["taskType"] == "authentication":
                    sessions.add(item["connectionSessionUUID"])
                else:
                    got.add(item["taskUUID"])
        assert got == {t["taskUUID"] for t in tasks} and len(sessions) == 1


def test_a_keyless_socket_must_authenticate_once_a_key_exists(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(api_keys=[])
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        assert ws.receive_json()["data"][0]["pong"] is True  # no keys yet: no authentication
        _info, key = edge.server.runtime.keys.store.create("the first key")
        edge.clock.advance(2)  # past the key cache
        ws.send_text(json.dumps([inference()]))
        assert ws.receive_json()["errors"][0]["code"] == "missingApiKey"
        assert edge.engine.calls == []
        task = inference()
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": key}, task]))
        assert ws.receive_json()["data"][0]["taskType"] == "authentication"
        assert ws.receive_json()["data"][0]["taskUUID"] == task["taskUUID"]
