"""easel's own API, in-process: submit any catalog id, the progress stream (server-sent events,
read as curl or a browser reads them), list, show and cancel, keys and bad input. `easel jobs`
against a running server and what `easel serve` says when it starts are tested on a real
server (tests/server/test_easel_api.py)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests import sse
from tests.edge.conftest import Edge
from tests.fakes import FakeEngine
from tests.server_harness import SMALL_SIZES

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def events(edge: Edge, job_id: str, headers: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """(event name, data) of a job's stream, parsed as any SSE client parses it."""
    with edge.client.stream("GET", f"/easel/jobs/{job_id}/events", headers=headers) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        yield from sse.parse(reply.iter_lines())


QUICK = "imagen-4.0-generate-001"  # Standard: two steps on the keyed app


def submit(edge: Edge, headers: dict[str, str], **fields: Any) -> Any:
    body = {"model": "google/imagen4-fast", "prompt": "a red fox in snow", **fields}
    return edge.client.post("/easel/jobs", json=body, headers=headers)


@pytest.fixture
def keyed(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    """Two callers; Fast jobs of 60 steps (the stream has steps to show: the fake engine's steps
    take a hundredth of a second) and quick Standard ones; one image per engine call (a job of
    two images runs in two chunks)."""
    catalog = tmp_path / "keyed.toml"
    catalog.write_text(SMALL_SIZES + "\n[backends.flux2-klein-4b]\nsteps = 60\n"
                       "\n[backends.z-image-turbo]\nsteps = 2\n")  # quick jobs: Standard
    return make_edge(FakeEngine(step_seconds=0.01), small=False, api_keys=["key-a", "key-b"],
                     batch_size=1, catalog_file=catalog, stand_in="tiny",
                     stand_in_max_steps=4000)


def test_a_job_streams_its_steps_then_ends_with_its_images(keyed: Edge) -> None:
    reply = submit(keyed, A, num_images=2, seed=11, output_format="png")
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert (job["status"], job["dialect"], job["seeds"]) == ("queued", "easel", [11, 12])
    seen = list(events(keyed, job["id"], A))
    names = [name for name, _ in seen]
    assert names[-1] == "end" and set(names[:-1]) <= {"progress"}
    steps = [data["progress"]["step"] for _, data in seen]
    # Progress counts the steps of both chunks, so it only moves forward.
    assert steps == sorted(steps), steps
    assert any(0 < step < 120 for step in steps), steps  # steps in between were streamed
    final = seen[-1][1]
    assert final["status"] == "completed" and final["progress"] == {
        "step": 120, "total": 120, "fraction": 1.0}
    for output, seed in zip(final["outputs"], (11, 12), strict=True):
        assert output["ready"] and output["seed"] == seed
        image = keyed.client.get(output["url"])
        assert image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert decoded.size == (64, 64)
    # A finished job's stream is its end event alone.
    assert [name for name, _ in events(keyed, job["id"], A)] == ["end"]


def test_jobs_are_listed_newest_first_and_only_to_their_caller(keyed: Edge) -> None:
    ids = [submit(keyed, B, model=QUICK, prompt=f"prompt {i}").json()["id"] for i in range(3)]
    for job_id in ids:
        list(events(keyed, job_id, B))  # until each ends
    listed = keyed.client.get("/easel/jobs", headers=B).json()["jobs"]
    assert [job["id"] for job in listed] == ids[::-1]
    first_page = keyed.client.get("/easel/jobs?limit=2", headers=B).json()
    after = first_page["jobs"][-1]["id"]
    rest = keyed.client.get("/easel/jobs", params={"after": after}, headers=B).json()["jobs"]
    assert [j["id"] for j in first_page["jobs"] + rest] == ids[::-1]
    done = keyed.client.get("/easel/jobs?status=completed,failed", headers=B).json()["jobs"]
    assert {j["id"] for j in done} == set(ids)
    assert keyed.client.get("/easel/jobs?status=queued", headers=B).json()["jobs"] == []
    # A cannot see, stream or cancel B's jobs, by any route.
    mine = keyed.client.get("/easel/jobs", headers=A).json()["jobs"]
    assert not {j["id"] for j in mine} & set(ids)
    for path in ("", "/events", "/deliveries"):
        assert keyed.client.get(f"/easel/jobs/{ids[0]}{path}", headers=A).status_code == 404
    cancel = keyed.client.post(f"/easel/jobs/{ids[0]}/cancel", headers=A)
    assert cancel.status_code == 404 and cancel.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("fields", "status", "code", "parameter"), [
    ({"model": "no-such-model"}, 404, "unknown_model", "model"),
    ({"num_images": 9}, 400, "invalid", "num_images"),
    ({"prompt": ""}, 400, "missing", "prompt"),
    ({"aspect_ratio": "2:1"}, 400, "invalid", "aspect_ratio"),
    ({"resolution": "2k"}, 400, "invalid", "resolution"),  # Fast is 1K only
    ({"negative_prompt": "blur"}, 400, "unsupported", "negative_prompt"),  # klein: no CFG
    ({"seed": -1}, 400, "invalid", "seed"),
    ({"colour": "red"}, 400, "unsupported", "colour"),
    ({"num_images": "2"}, 400, "invalid", "num_images"),
    # A task_id is the job's id in every path: one it could never be reached by is refused.
    ({"task_id": "batch/1"}, 400, "invalid", "task_id"),
    ({"task_id": ".."}, 400, "invalid", "task_id"),
    ({"task_id": "a b"}, 400, "invalid", "task_id"),
    ({"task_id": "50%"}, 400, "invalid", "task_id"),
])
def test_bad_input_is_refused_naming_the_parameter(
    keyed: Edge, fields: dict[str, Any], status: int, code: str, parameter: str
) -> None:
    reply = submit(keyed, A, **fields)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert parameter in error["message"] or code == "unknown_model"


def test_without_a_key_every_route_says_so(keyed: Edge) -> None:
    for method, path in (("GET", "/easel/jobs"), ("POST", "/easel/jobs"),
                         ("GET", "/easel/models"), ("GET", "/easel/jobs/x/events")):
        reply = keyed.client.request(method, path, json={})
        assert reply.status_code == 401, (path, reply.text)
        assert reply.json()["error"]["parameter"] == "Authorization"
    bad = keyed.client.get("/easel/jobs?limit=500", headers=A)
    assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "limit"
    bad = keyed.client.get("/easel/jobs?status=done", headers=A)
    assert bad.status_code == 400 and "queued" in bad.json()["error"]["message"]
    for query, parameter in (("limit=²", "limit"), ("after=no-such-job", "after")):
        bad = keyed.client.get(f"/easel/jobs?{query}", headers=A)
        assert bad.status_code == 400 and bad.json()["error"]["parameter"] == parameter
    unknown = keyed.client.get("/easel/nothing-here", headers=A)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "notFound"


def test_a_task_id_names_the_job_on_every_route_and_repeats_idempotently(keyed: Edge) -> None:
    first = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert first.status_code == 202 and first.json()["id"] == "my-job-1"
    again = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert again.status_code == 200 and again.json()["job"] == first.json()["job"]
    clash = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="another prompt")
    assert clash.status_code == 409 and clash.json()["error"]["parameter"] == "task_id"
    assert [name for name, _ in events(keyed, "my-job-1", A)][-1] == "end"
    shown = keyed.client.get("/easel/jobs/my-job-1", headers=A).json()
    assert shown["status"] == "completed" and shown["prompt"] == "a heron"
    newer = submit(keyed, A, model=QUICK, prompt="after the heron").json()
    page = keyed.client.get("/easel/jobs", params={"after": newer["id"], "limit": 1},
                     headers=A).json()["jobs"]
    assert [job["id"] for job in page] == ["my-job-1"]  # the cursor is any id of the job
    # Another caller's same task id is another job.
    theirs = submit(keyed, B, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert theirs.status_code == 202 and theirs.json()["job"] != first.json()["job"]


def test_a_task_id_of_every_character_allowed_reaches_its_job(keyed: Edge) -> None:
    task_id = "Batch_7:run-2.v1"
    assert submit(keyed, A, model=QUICK, task_id=task_id).json()["id"] == task_id
    shown = keyed.client.get(f"/easel/jobs/{task_id}", headers=A)
    assert shown.status_code == 200 and shown.json()["id"] == task_id


def test_the_catalog_lists_every_model_id_by_tier_with_sizes_and_licence(keyed: Edge) -> None:
    from easel.catalog import Catalog

    view = keyed.client.get("/easel/models", headers=A).json()
    listed = {m["id"]: (t["tier"], m) for t in view["tiers"] for m in t["models"]}
    catalog = Catalog.load()
    assert set(listed) == set(catalog.models)
    tier, fast = listed["google/imagen4-fast"]
    assert tier == "fast" and fast["max_images"] == 4 and fast["negative_prompt"] is False
    assert {(s["aspect_ratio"], s["width"], s["height"]) for s in fast["sizes"]} >= {
        ("1:1", 64, 64), ("16:9", 64, 32)}
    (fast_tier,) = [t for t in view["tiers"] if t["tier"] == "fast"]
    assert fast_tier["license"]["id"] == "apache-2.0" and fast_tier["weights"] == "absent"
    assert fast_tier["stand_in"] == "easel/tiny-flux2" and fast_tier["price_usd"] == 0.02


def test_a_running_job_is_cancelled_from_its_stream(keyed: Edge) -> None:
    """The stream shows the job denoising; a cancel then stops it within a step, and the
    stream ends with the job cancelled, no image stored."""
    running = submit(keyed, A, prompt="a lighthouse at dusk").json()
    for name, data in events(keyed, running["id"], A):
        if name == "progress" and data["progress"]["step"] > 0 and not data["cancel_requested"]:
            reply = keyed.client.post(f"/easel/jobs/{running['id']}/cancel", headers=A)
            assert reply.status_code == 200 and reply.json()["cancel_requested"]
        last = (name, data)
    assert last[0] == "end" and last[1]["status"] == "cancelled"
    assert last[1]["error"]["kind"] == "cancelled" and last[1]["outputs"][0]["url"] is None
    assert 0 < last[1]["progress"]["step"] < last[1]["progress"]["total"]
