"""Attacks on the routes, each fixed (issue: hardening), driven in-process: polling floods,
replies too large to build, text that breaks tokenizers, keys that fail or are revoked,
malformed bodies and frames, single fields out of bounds, the queue cap, cross-site requests,
another caller's ids, forged refusal ids, protected meta routes. The attacks that need a real
server process (a receiver's huge reply against its memory, slow receivers, keep-alive, kill -9)
are in tests/security."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


# -- 1. polling ------------------------------------------------------------------------------


def test_duplicate_polls_are_answered_once_and_requests_are_bounded(edge: Edge) -> None:
    task = inference(numberResults=3, outputType="base64Data")
    assert edge.runware([task]).status_code == 200
    reply = edge.runware([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}] * 500)
    assert reply.status_code == 200
    assert [item["taskUUID"] for item in reply.json()["data"]] == [task["taskUUID"]] * 3
    many = [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())} for _ in range(101)]
    refused = edge.runware(many)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "tooManyTasks"


def test_a_reply_over_the_byte_budget_is_refused_not_built(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(max_reply_bytes=40_000)  # one task of 4 fits
    tasks = [inference(numberResults=4, outputType="base64Data") for _ in range(3)]
    for task in tasks:  # synchronous: one task's images fit in one reply
        assert edge.runware([task]).status_code == 200
    reply = edge.runware([{"taskType": "getResponse", "taskUUID": t["taskUUID"]} for t in tasks])
    body = reply.json()
    assert len(reply.content) < 60_000
    assert any(e["code"] == "responseTooLarge" and "URL" in e["message"]
               for e in body["errors"])


# -- 4. text that breaks tokenizers ----------------------------------------------------------


def test_a_lone_surrogate_is_refused_at_submission_in_every_dialect(edge: Edge) -> None:
    surrogate = '"a fox \\ud800"'
    task = json.dumps({**inference(), "positivePrompt": "PLACEHOLDER"}).replace(
        '"PLACEHOLDER"', surrogate)
    calls = {
        "runware": ("/v1", f"[{task}]", "positivePrompt"),
        "openai": ("/v1/images/generations",
                   '{"model": "imagen-4.0-fast-generate-001", "prompt": ' + surrogate + "}",
                   "prompt"),
        "google": ("/v1beta/models/imagen-4.0-fast-generate-001:predict",
                   '{"instances": [{"prompt": ' + surrogate + "}]}", "instances[0].prompt"),
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for path, body, parameter in calls.values():
        reply = edge.client.post(path, content=body.encode(), headers=headers)
        assert reply.status_code == 400, reply.text
        assert parameter in reply.text
    reply = edge.client.post("/api/v3/google/imagen4-fast", headers=headers,
                             content=('{"prompt": ' + surrogate + "}").encode())
    data = reply.json()["data"]
    assert reply.status_code == 200 and data["status"] == "failed" and data["code"] == 1401
    assert "prompt" in data["error"]
    assert edge.db("SELECT COUNT(*) FROM jobs") == [(0,)]  # no job was created


# -- 5, 6. keys: fail closed, revocation reaches open sockets ----------------------------------


def test_authentication_fails_closed_when_the_key_store_cannot_be_read(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(api_keys=[])  # the keys are the store's
    _info, key = edge.server.runtime.keys.store.create("caller")
    bearer = {"Authorization": f"Bearer {key}"}
    assert edge.runware([inference()], key=key).status_code == 200
    with sqlite3.connect(edge.settings.data_dir / "easel.db") as conn:  # the key store breaks
        conn.execute("ALTER TABLE api_keys RENAME TO api_keys_gone")
    edge.clock.advance(2)  # past the key cache
    for headers in ({}, bearer, {"Authorization": "Bearer wrong"}):
        reply = edge.runware([inference()], key=None, headers=headers)
        assert reply.status_code == 503 and reply.headers["Retry-After"], reply.text
    openai = edge.client.post("/v1/images/generations", json={"prompt": "a fox"})
    assert openai.status_code == 503
    assert edge.engine.calls[1:] == []  # nothing ran without a checked key


def test_a_revoked_key_stops_working_on_an_open_websocket(edge: Edge) -> None:
    info, key = edge.server.runtime.keys.store.create("revoked soon")
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": key}]))
        assert "data" in ws.receive_json()
        assert edge.server.runtime.keys.store.revoke(info.id)
        edge.clock.advance(2)  # past the key cache
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        assert ws.receive_json()["errors"][0]["code"] == "invalidApiKey"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


# -- 7. malformed JSON ----------------------------------------------------------------------


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_malformed_json_on_the_websocket_keeps_the_session(edge: Edge) -> None:
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": KEY}]))
        assert "data" in ws.receive_json()
        ws.send_text(DEEP.decode())
        assert ws.receive_json()["errors"][0]["code"] in ("invalidJSON", "invalidPayload")
        ws.send_text(json.dumps([{"taskType": "ping", "ping": True}]))
        assert ws.receive_json()["data"][0]["pong"] is True


# -- 8, 15, 21. bounds on single fields --------------------------------------------------------


def test_a_huge_ttl_is_refused_naming_ttl(edge: Edge) -> None:
    reply = edge.runware([inference(ttl=10**12)])
    assert reply.status_code == 400
    error = reply.json()["errors"][0]
    assert error["parameter"] == "ttl" and error["code"] == "invalidTtl"


@pytest.mark.parametrize("output_type", [{"a": 1}, [["URL"]], [{"x": 1}]])
def test_output_type_of_the_wrong_shape_is_a_400(edge: Edge, output_type: Any) -> None:
    reply = edge.runware([inference(outputType=output_type)])
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["code"] == "unsupportedOutputType"


def test_a_task_uuid_in_another_case_is_the_same_task(edge: Edge) -> None:
    task = inference(deliveryMethod="async")
    upper = {**task, "taskUUID": task["taskUUID"].upper()}
    assert edge.runware([task]).status_code == 200
    assert edge.runware([upper]).status_code == 200
    count = edge.db("SELECT COUNT(*) FROM jobs WHERE task_id = ?", task["taskUUID"])
    assert count == [(1,)]
    assert edge.db("SELECT COUNT(*) FROM jobs WHERE task_id = ?", upper["taskUUID"]) == [(0,)]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_cannot_carry_are_refused_never_a_500(edge: Edge, number: str) -> None:
    """Python's parser reads NaN and Infinity (1e999 is Infinity): WaveSpeed's refusal echoed
    one back (a 500 writing its reply), and Runware stored one in providerSettings that
    getTaskDetails could then never answer."""
    wavespeed = edge.client.post(
        "/api/v3/google/imagen4-ultra", headers={"Authorization": f"Bearer {KEY}",
                                                 "Content-Type": "application/json"},
        content=f'{{"prompt": "a fox", "guidance_scale": {number}}}')
    assert wavespeed.status_code == 200, wavespeed.text
    data = wavespeed.json()["data"]
    assert data["status"] == "failed" and data["code"] == 1401
    assert "guidance_scale" in data["error"]
    task = inference()
    body = json.dumps([task])[:-2] + f', "providerSettings": {{"google": {{"x": {number}}}}}}}]'
    runware = edge.client.post("/v1", content=body, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert runware.status_code == 400, runware.text
    error = runware.json()["errors"][0]
    assert error["parameter"].startswith("providerSettings"), error
    assert edge.engine.calls == []


# -- 9. the queue cap is atomic --------------------------------------------------------------


def test_one_batch_cannot_exceed_the_queue_cap(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(max_queue_depth=10, rate_limit_burst=10_000, run_worker=False)
    tasks = [inference(deliveryMethod="async") for _ in range(100)]
    body = edge.runware(tasks).json()
    assert len(body["data"]) == 10
    assert {e["code"] for e in body["errors"]} == {"modelUnavailable"}
    assert edge.db("SELECT COUNT(*) FROM jobs") == [(10,)]


# -- 10. cross-site requests -----------------------------------------------------------------


def test_foreign_hosts_origins_and_non_json_bodies_are_refused(edge: Edge) -> None:
    evil_host = edge.runware([inference()], headers={"Host": "evil.example"})
    assert evil_host.status_code == 400
    assert evil_host.json()["errors"][0]["code"] == "invalidHost"
    evil_origin = edge.runware([inference()], headers={"Origin": "http://evil.example"})
    assert evil_origin.status_code == 403
    assert evil_origin.json()["errors"][0]["code"] == "forbiddenOrigin"
    keyed = {"Authorization": f"Bearer {KEY}"}
    plain = edge.client.post("/v1/images/generations", content=b'{"prompt": "a fox"}',
                             headers={**keyed, "Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"]["param"] == "Content-Type"
    plain_runware = edge.client.post("/v1", content=json.dumps([inference()]).encode(),
                                     headers={**keyed, "Content-Type": "text/plain"})
    assert plain_runware.status_code == 415
    same_origin = edge.runware([inference()], headers={"Origin": "http://testserver"})
    assert same_origin.status_code == 200
    with pytest.raises(WebSocketDisconnect) as refused, edge.client.websocket_connect(
            "/v1", headers={"Origin": "http://evil.example"}):
        pass
    assert refused.value.code == 1008


def test_google_names_a_body_too_large_or_not_json_by_its_own_status(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(max_body_bytes=10_000)
    path = "/v1beta/models/imagen-4.0-generate-001:predict"
    keyed = {"x-goog-api-key": KEY}
    large = edge.client.post(path, json={"instances": [{"prompt": "a fox " * 5000}]},
                             headers=keyed)
    plain = edge.client.post(path, content=b'{"instances": [{"prompt": "a fox"}]}',
                             headers={**keyed, "Content-Type": "text/plain"})
    for reply, status in ((large, 413), (plain, 415)):
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == status
        assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- 11, 12. callers see only their own jobs -------------------------------------------------


def test_ids_idempotency_and_sessions_are_scoped_to_the_key(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(api_keys=["key-a", "key-b"])
    client = edge.client
    task = inference()
    first = client.post("/v1", json=[task], headers=A).json()["data"]
    # B reads nothing of A's task, and may use the same taskUUID for a job of its own.
    poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
    stolen = client.post("/v1", json=poll, headers=B)
    assert stolen.json()["errors"][0]["code"] == "taskNotFound"
    own = client.post("/v1", json=[{**task, "positivePrompt": "b's own"}],
                      headers=B).json()["data"]
    assert own[0]["imageUUID"] != first[0]["imageUUID"]
    # The same Idempotency-Key from two keys: two jobs.
    body = {"model": "imagen-4.0-fast-generate-001", "prompt": "a fox", "size": "64x64",
            "response_format": "b64_json"}
    one = client.post("/v1/images/generations", json=body,
                      headers={**A, "Idempotency-Key": "same"})
    two = client.post("/v1/images/generations", json=body,
                      headers={**B, "Idempotency-Key": "same"})
    assert one.headers["x-easel-job-id"] != two.headers["x-easel-job-id"]
    # A Runware poll cannot read an OpenAI job by its id.
    cross = client.post("/v1", headers=A, json=[
        {"taskType": "getResponse", "taskUUID": one.headers["x-easel-job-id"]}])
    assert cross.json()["errors"][0]["code"] == "taskNotFound"
    # WaveSpeed: B cannot poll or cancel A's prediction.
    made = client.post("/api/v3/google/imagen4-fast", json={"prompt": "a fox"},
                       headers=A).json()["data"]
    result = f"/api/v3/predictions/{made['id']}/result"
    assert client.get(result, headers=B).status_code == 404
    assert client.post(f"/api/v3/predictions/{made['id']}/cancel", headers=B).status_code == 404
    assert client.get(f"/easel/jobs/{made['id']}", headers=B).status_code == 404
    assert client.get(result, headers=A).status_code == 200
    # A refused prediction (its failed task lives in its id, with the prompt): A's alone, and
    # its id does not show the prompt.
    refused = client.post("/api/v3/google/imagen4-fast", headers=A,
                          json={"prompt": "a's secret heron", "num_images": 9}).json()["data"]
    assert refused["status"] == "failed" and "heron" not in refused["id"]
    refused_url = f"/api/v3/predictions/{refused['id']}/result"
    assert client.get(refused_url, headers=B).status_code == 404
    assert client.get(refused_url, headers=A).json()["data"]["input"]["prompt"] == \
        "a's secret heron"
    # WebSocket: B resuming A's session gets a session of its own.
    with client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": "key-a"}]))
        session_a = ws.receive_json()["data"][0]["connectionSessionUUID"]
    with client.websocket_connect("/v1") as ws:
        ws.send_text(json.dumps([{"taskType": "authentication", "apiKey": "key-b",
                                  "connectionSessionUUID": session_a}]))
        session_b = ws.receive_json()["data"][0]["connectionSessionUUID"]
    assert session_b != session_a


def test_an_idempotency_key_used_again_is_named_as_the_client_sent_it(edge: Edge) -> None:
    body = {"model": "imagen-4.0-fast-generate-001", "prompt": "a fox", "size": "64x64",
            "response_format": "b64_json"}
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "Order-e1"}
    assert edge.client.post("/v1/images/generations", json=body,
                            headers=headers).status_code == 200
    clash = edge.client.post("/v1/images/generations", json={**body, "prompt": "a heron"},
                             headers=headers)
    assert clash.status_code == 409, clash.text
    error = clash.json()["error"]
    assert error["param"] == "Idempotency-Key"
    assert error["message"].startswith("Idempotency-Key Order-e1 was already used"), error


# -- 18. forged WaveSpeed refusal ids --------------------------------------------------------


def test_forged_and_oversized_refusal_ids_are_not_found(edge: Edge) -> None:
    keyed = {"Authorization": f"Bearer {KEY}"}
    refused = edge.client.post("/api/v3/google/imagen4-fast", json={}, headers=keyed)
    real = refused.json()["data"]
    assert edge.client.get(real["urls"]["get"], headers=keyed).json()["data"]["status"] == \
        "failed"
    message = {"m": "google/imagen4-fast", "c": 1401, "e": "PWNED " * 10, "p": None,
               "t": "2026-01-01T00:00:00.000Z"}
    packed = zlib.compress(json.dumps(message).encode())
    forged = "rf-" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    reply = edge.client.get(f"/api/v3/predictions/{forged}/result", headers=keyed)
    assert reply.status_code == 404 and "PWNED" not in reply.text
    big = "rf-" + "A" * 11_000
    reply = edge.client.get(f"/api/v3/predictions/{big}/result", headers=keyed)
    assert reply.status_code == 404 and len(reply.content) < 2000
    nested = b'{"m":' * 50_000 + b"1" + b"}" * 50_000
    deep = "rf-" + base64.urlsafe_b64encode(zlib.compress(nested)).decode().rstrip("=")
    reply = edge.client.get(f"/api/v3/predictions/{deep[:6000]}/result", headers=keyed)
    assert reply.status_code in (400, 404) and len(reply.content) < 10_000


# -- 22. protected meta routes ---------------------------------------------------------------


def test_metrics_and_docs_can_require_a_key(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(api_keys=["k"], protect_meta_routes=True)
    for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
        assert edge.client.get(path).status_code == 401, path
        assert edge.client.get(path, headers={"Authorization": "Bearer k"}).status_code == 200
    assert edge.client.get("/livez").status_code == 200


# -- 23. a partly refused batch says when to retry ---------------------------------------------


def test_a_batch_partly_over_the_rate_limit_carries_retry_after(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(rate_limit_per_second=0.001, rate_limit_burst=2)
    reply = edge.runware([inference(deliveryMethod="async") for _ in range(4)])
    assert reply.status_code == 200
    assert len(reply.json()["data"]) == 2 and len(reply.json()["errors"]) == 2
    assert int(reply.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "http://evil.example\\@testserver"}, 403),  # parsers disagree on the host
    ({"Origin": "http://user@testserver"}, 403),  # userinfo: no origin a browser sends
    ({"Origin": "http://testserver/path"}, 403),
    ({"Host": "testserver:80@evil.example"}, 400),
    ({"Host": "testserver:abc"}, 400),
    ({"Host": "testserver:99999999"}, 400),
])
def test_malformed_origins_and_hosts_are_refused(
    edge: Edge, headers: dict[str, str], status: int
) -> None:
    """An Origin is scheme://host[:port] and a Host a name and a numeric port, as browsers send
    them; anything else is no page of this server's (a parser's reading of it could be)."""
    reply = edge.client.get("/easel/jobs", headers={"Authorization": f"Bearer {KEY}", **headers})
    assert reply.status_code == status, reply.text


def test_two_origin_headers_are_no_pages(edge: Edge) -> None:
    """A browser sends one Origin; with two, the last must not vouch for the first."""
    reply = edge.client.get("/easel/jobs", headers=[
        ("Authorization", f"Bearer {KEY}"), ("Origin", "http://evil.example"),
        ("Origin", "http://testserver")])
    assert reply.status_code == 403, reply.text
    alone = edge.client.get("/easel/jobs", headers={"Authorization": f"Bearer {KEY}",
                                                    "Origin": "http://testserver"})
    assert alone.status_code == 200, alone.text
