"""What every dialect does alike, checked on each through its own wire (tests/wire.py): the
shared caller dependency refuses a missing or wrong key in the dialect's shape; a bad parameter
is named; reads and cancels spend the caller's rate budget; a job store that is down is a 503
with Retry-After on submissions, polls and cancels; an unknown route answers in the shape of
the dialect whose paths it is under."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from easel.api.caller import authenticated
from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference
from tests.wire import WIRES, Wire

# Each dialect's answer to a refused key: (missing key, wrong key), each (status, code). Google's
# Gemini API refuses an unregistered caller (no key) with 403 and a wrong key with 400.
REFUSED_KEY = {
    "runware": ((401, "missingApiKey"), (401, "invalidApiKey")),
    "wavespeed": ((401, "401"), (401, "401")),
    "openai": ((401, "invalid_api_key"), (401, "invalid_api_key")),
    "google": ((403, "PERMISSION_DENIED"), (400, "INVALID_ARGUMENT")),
    "google-vertex": ((401, "UNAUTHENTICATED"), (401, "UNAUTHENTICATED")),
    "easel": ((401, "invalidApiKey"), (401, "invalidApiKey")),
}
RATE_LIMITED = {"runware": "rateLimitExceeded", "wavespeed": "429", "easel": "rate_limited"}
UNAVAILABLE = {"runware": "modelUnavailable", "wavespeed": "503", "openai": "service_unavailable",
               "google": "UNAVAILABLE", "google-vertex": "UNAVAILABLE", "easel": "unavailable"}


@pytest.fixture(params=WIRES, ids=lambda wire: wire.name)
def wire(request: pytest.FixtureRequest) -> Wire:
    chosen: Wire = request.param
    return chosen


def test_a_missing_or_wrong_key_is_refused_in_the_dialects_shape(edge: Edge, wire: Wire) -> None:
    for key, refusal in zip((None, "wrong"), REFUSED_KEY[wire.name], strict=True):
        reply = edge.send(wire.generate(key))
        error = wire.error(reply)
        assert (reply.status_code, error.status, error.code) == (refusal[0], *refusal), reply.text
    assert edge.engine.calls == []  # nothing ran for them


def test_every_keyed_route_takes_the_shared_caller_dependency(edge: Edge) -> None:
    """The 401 of every dialect comes from one dependency (api/caller.py) and one handler:
    no route checks a key itself. Runware's REST route reads its key from the body's
    authentication task through the same `identify`; /easel/info answers without a key;
    WaveSpeed's upload PUT is authorised by its signed URL (403 for one easel did not sign),
    as the SDK sends it with the ticket's headers only."""
    open_paths = {"/easel/info", "/v1", "/v1/", "/api/v3/media/uploads/{name}"}
    keyed = [route for route in _api_routes(edge.server.app.routes)
             if route.path.startswith(("/v1", "/api/v3", "/easel"))
             and route.path not in open_paths
             and not route.endpoint.__qualname__.startswith("_not_offered")]
    assert len(keyed) > 20
    missing = [route.path for route in keyed if authenticated not in _dependency_calls(route)]
    assert missing == []
    sources = Path(__file__).parents[2] / "src" / "easel"
    raisers = sorted(str(p.relative_to(sources)) for p in sources.rglob("*.py")
                     if "Unauthenticated(" in p.read_text())
    assert raisers == ["api/caller.py", "domain/errors.py"]


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every route of the app, those of the routers it includes too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            yield from _api_routes(included.routes)


def _dependency_calls(route: APIRoute) -> set[object]:
    calls: set[object] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        calls.add(dependency.call)
        pending.extend(dependency.dependencies)
    return calls


def test_a_bad_parameter_is_named_in_the_dialects_shape(edge: Edge, wire: Wire) -> None:
    call, parameter = wire.bad_parameter(KEY)
    error = wire.error(edge.send(call))
    if wire.name == "wavespeed":  # refused as a failed task, which its SDK polls
        assert (error.status, error.code) == (200, "1401") and parameter in error.message
    else:
        assert (error.status, error.parameter) == (400, parameter), error
    assert edge.engine.calls == []


def test_a_generation_and_its_poll(edge: Edge, wire: Wire) -> None:
    reply = edge.send(wire.generate(KEY))
    assert reply.status_code in (200, 202), reply.text
    if wire.name == "easel":  # easel's own API queues the job and answers at once
        assert edge.wait(wire.job_id(reply)).status.value == "completed"
    else:
        assert wire.images(reply) == 1
    if wire.polls:
        polled = edge.send(wire.poll(KEY, wire.job_id(reply)))
        assert polled.status_code == 200, polled.text


@pytest.mark.parametrize("wire", [w for w in WIRES if w.polls], ids=lambda w: w.name)
def test_polls_and_cancels_spend_the_callers_rate_budget(make_edge: Callable[..., Edge],
                                                         wire: Wire) -> None:
    """Every read of a job spends a token of the caller's bucket, in every dialect; a caller
    over it gets 429 with Retry-After in the dialect's shape, and another caller does not."""
    edge = make_edge(rate_limit_per_second=1.0, rate_limit_burst=3, run_worker=False,
                     api_keys=[KEY, "other-key"])
    job_id = wire.job_id(edge.send(wire.submit(KEY)))  # one token
    reads = [wire.poll(KEY, job_id)] * 2 + ([wire.cancel(KEY, job_id)] if wire.cancels else [])
    for call in reads[:2]:
        assert edge.send(call).status_code == 200
    limited = edge.send(reads[-1] if wire.cancels else wire.poll(KEY, job_id))
    error = wire.error(limited)
    assert (error.status, error.code) == (429, RATE_LIMITED[wire.name]), limited.text
    assert int(limited.headers["Retry-After"]) >= 1
    assert edge.send(wire.submit("other-key")).status_code in (200, 202)  # its own bucket
    edge.clock.advance(5)
    assert edge.send(wire.poll(KEY, job_id)).status_code == 200


def test_wavespeed_refusals_and_their_polls_spend_the_rate_budget(
    make_edge: Callable[..., Edge],
) -> None:
    """A refused WaveSpeed submission is answered as a failed task (with a webhook when one was
    named) that the SDK polls by an id carrying the refusal, no job behind it: the refusal and
    each poll of it spend one token, as a job's do, whether the refusal came from the dialect
    (a malformed field) or from the core; over the budget, 429 with Retry-After."""
    edge = make_edge(rate_limit_per_second=1.0, rate_limit_burst=3, run_worker=False,
                     api_keys=[KEY, "other-key"])
    wavespeed = next(w for w in WIRES if w.name == "wavespeed")
    malformed = wavespeed.bad_parameter(KEY)[0]
    core_refused = replace(wavespeed.submit("other-key"), json={"prompt": ""})
    for refusal in (malformed, core_refused):
        refused = edge.send(refusal)  # one token
        assert wavespeed.error(refused).code in ("1400", "1401"), refused.text
        poll = replace(wavespeed.poll(KEY, refused.json()["data"]["id"]),
                       headers=refusal.headers)
        for _ in range(2):  # two more
            assert edge.send(poll).json()["data"]["status"] == "failed"
        for call in (poll, refusal):
            limited = edge.send(call)
            error = wavespeed.error(limited)
            assert (error.status, error.code) == (429, "429"), limited.text
            assert int(limited.headers["Retry-After"]) >= 1
    edge.clock.advance(5)
    assert edge.send(poll).json()["data"]["status"] == "failed"


def test_runware_websocket_polls_and_authentications_spend_the_rate_budget(
    make_edge: Callable[..., Edge],
) -> None:
    """Over the WebSocket as over REST: every getResponse spends a token, and so does every
    authentication (each opens a session the server keeps for a reconnecting client)."""
    edge = make_edge(rate_limit_per_second=1.0, rate_limit_burst=3, run_worker=False)
    auth = [{"taskType": "authentication", "apiKey": KEY}]
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_json(auth)  # one token
        assert "errors" not in ws.receive_json()
        task = inference(deliveryMethod="async")
        ws.send_json([task])  # two
        assert ws.receive_json()["data"][0]["taskUUID"] == task["taskUUID"]
        poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
        ws.send_json(poll)  # three
        assert "errors" not in ws.receive_json()
        for frame in (poll, auth):
            ws.send_json(frame)
            error = ws.receive_json()["errors"][0]
            assert error["code"] == RATE_LIMITED["runware"], error
            assert error["taskType"] == frame[0]["taskType"]
        edge.clock.advance(5)
        ws.send_json(poll)
        assert "errors" not in ws.receive_json()


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Callable[[Edge], None]]:
    """Takes an edge's job store away (its directory gone, its connections closed), as a lost
    volume would, and gives it back at the end."""
    gone: list[tuple[Path, Path]] = []

    def take(edge: Edge) -> None:
        data = edge.settings.data_dir
        edge.server.runtime.store.engine.dispose()
        moved = data.with_name(data.name + "-gone")
        os.rename(data, moved)
        gone.append((moved, data))
        edge.clock.advance(10)  # past the storage probe's memory

    yield take
    for moved, data in gone:
        os.rename(moved, data)


def test_a_store_that_is_down_is_a_503_on_submit_poll_and_cancel(
    make_edge: Callable[..., Edge], outage: Callable[[Edge], None], wire: Wire
) -> None:
    """The keys come from EASEL_API_KEYS, so the caller is known without the store: what is
    refused is the store's work itself, with Retry-After, never a 500, a 401 or a 404."""
    edge = make_edge(run_worker=False)
    job_id = wire.job_id(edge.send(wire.submit(KEY))) if wire.polls else None
    outage(edge)
    calls = [wire.submit(KEY)]
    if job_id is not None:
        calls.append(wire.poll(KEY, job_id))
    if job_id is not None and wire.cancels:
        calls.append(wire.cancel(KEY, job_id))
    for call in calls:
        reply = edge.send(call)
        error = wire.error(reply)
        assert (error.status, error.code) == (503, UNAVAILABLE[wire.name]), (call, reply.text)
        assert int(reply.headers["Retry-After"]) >= 1


UNKNOWN = {
    "runware": ("GET", "/v1", 405, "methodNotAllowed"),
    "wavespeed": ("GET", "/api/v3/nothing-here", 405, "405"),
    "openai": ("POST", "/v1/images/variations", 404, "not_found"),
    "google": ("GET", "/v1beta/nothing-here", 404, "NOT_FOUND"),
    "google-vertex": ("GET", "/v1beta1/nothing-here", 404, "NOT_FOUND"),
    "easel": ("GET", "/easel/nothing-here", 404, "notFound"),
}


def test_an_unknown_route_is_answered_in_the_dialects_shape(edge: Edge, wire: Wire) -> None:
    method, path, status, code = UNKNOWN[wire.name]
    reply = edge.client.request(method, path, headers=wire.keyed(KEY))
    error = wire.error(reply)
    assert (error.status, error.code) == (status, code), reply.text
    assert f"easel does not offer {method}" in error.message


def test_a_page_on_another_port_of_this_host_is_another_site(edge: Edge, wire: Wire) -> None:
    """An origin is scheme, host and port: a page served on another port of this machine (any
    local program's) is refused as evil.example's is, in the dialect's shape; this server's own
    pages, on the port the request came to, are not."""
    call = wire.generate(KEY)

    def send(host: str, origin: str) -> Any:
        return edge.send(replace(call, headers={**call.headers, "Host": host, "Origin": origin}))

    foreign = wire.error(send("127.0.0.1:9000", "http://evil.example"))
    assert foreign.status == 403
    for host, origin in (("127.0.0.1:9000", "http://127.0.0.1:1"),
                         ("127.0.0.1:9000", "http://localhost:9001"),
                         ("127.0.0.1:9000", "http://127.0.0.1"),
                         ("testserver", "http://testserver:8080"),
                         ("testserver", "https://testserver:80")):
        error = wire.error(send(host, origin))
        assert (error.status, error.code) == (403, foreign.code), (host, origin)
    assert edge.engine.calls == []
    for host, origin in (("127.0.0.1:9000", "http://127.0.0.1:9000"),
                         ("127.0.0.1:9000", "http://localhost:9000"),  # a name it answers to
                         ("testserver", "http://testserver"),
                         ("testserver", "https://testserver:443")):
        reply = send(host, origin)
        assert reply.status_code in (200, 202), (host, origin, reply.text)
