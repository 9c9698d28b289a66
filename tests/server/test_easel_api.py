"""easel's own API on a real server: submit any catalog id, the progress stream (server-sent
events, read as curl or a browser reads them), list/show/cancel, `easel jobs`, and what
`easel serve` says when it starts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.server.test_cancel_and_workers import slow_server
from tests.server_harness import SMALL_SIZES, Server

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def events(srv: Server, job_id: str, headers: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """(event name, data) of a job's stream, parsed as any SSE client parses it."""
    with httpx.stream("GET", f"{srv.url}/easel/jobs/{job_id}/events", headers=headers,
                      timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        name, data = "message", []
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                yield name, json.loads("\n".join(data))
                name, data = "message", []


QUICK = "imagen-4.0-generate-001"  # Standard: two steps on the keyed server


def submit(srv: Server, headers: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"model": "google/imagen4-fast", "prompt": "a red fox in snow", **fields}
    return httpx.post(f"{srv.url}/easel/jobs", json=body, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two callers; Fast jobs of 60 steps (the stream has steps to show) and quick Standard
    ones; one image per engine call (a job of two images runs in two chunks)."""
    root = tmp_path_factory.mktemp("easel-api")
    catalog = root / "catalog.toml"
    catalog.write_text(SMALL_SIZES + "\n[backends.flux2-klein-4b]\nsteps = 60\n"
                       "\n[backends.z-image-turbo]\nsteps = 2\n")  # quick jobs: Standard
    srv = Server(root / "srv", small=False, EASEL_API_KEYS="key-a,key-b", EASEL_BATCH_SIZE=1,
                 EASEL_CATALOG_FILE=catalog, EASEL_STAND_IN="tiny",
                 EASEL_STAND_IN_MAX_STEPS=4000).start()
    yield srv
    srv.stop()


def test_a_job_streams_its_steps_then_ends_with_its_images(keyed: Server) -> None:
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
        image = httpx.get(output["url"], timeout=30)
        assert image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert decoded.size == (64, 64)
    # A finished job's stream is its end event alone.
    assert [name for name, _ in events(keyed, job["id"], A)] == ["end"]


def test_jobs_are_listed_newest_first_and_only_to_their_caller(keyed: Server) -> None:
    ids = [submit(keyed, B, model=QUICK, prompt=f"prompt {i}").json()["id"] for i in range(3)]
    for job_id in ids:
        list(events(keyed, job_id, B))  # until each ends
    listed = httpx.get(f"{keyed.url}/easel/jobs", headers=B, timeout=30).json()["jobs"]
    assert [job["id"] for job in listed] == ids[::-1]
    first_page = httpx.get(f"{keyed.url}/easel/jobs?limit=2", headers=B, timeout=30).json()
    after = first_page["jobs"][-1]["id"]
    rest = httpx.get(f"{keyed.url}/easel/jobs", params={"after": after}, headers=B,
                     timeout=30).json()["jobs"]
    assert [j["id"] for j in first_page["jobs"] + rest] == ids[::-1]
    done = httpx.get(f"{keyed.url}/easel/jobs?status=completed,failed", headers=B,
                     timeout=30).json()["jobs"]
    assert {j["id"] for j in done} == set(ids)
    assert httpx.get(f"{keyed.url}/easel/jobs?status=queued", headers=B,
                     timeout=30).json()["jobs"] == []
    # A cannot see, stream or cancel B's jobs, by any route.
    mine = httpx.get(f"{keyed.url}/easel/jobs", headers=A, timeout=30).json()["jobs"]
    assert not {j["id"] for j in mine} & set(ids)
    for path in ("", "/events", "/deliveries"):
        assert httpx.get(f"{keyed.url}/easel/jobs/{ids[0]}{path}", headers=A,
                         timeout=30).status_code == 404
    cancel = httpx.post(f"{keyed.url}/easel/jobs/{ids[0]}/cancel", headers=A, timeout=30)
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
])
def test_bad_input_is_refused_naming_the_parameter(
    keyed: Server, fields: dict[str, Any], status: int, code: str, parameter: str
) -> None:
    reply = submit(keyed, A, **fields)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert parameter in error["message"] or code == "unknown_model"


def test_without_a_key_every_route_says_so(keyed: Server) -> None:
    for method, path in (("GET", "/easel/jobs"), ("POST", "/easel/jobs"),
                         ("GET", "/easel/models"), ("GET", "/easel/jobs/x/events")):
        reply = httpx.request(method, keyed.url + path, json={}, timeout=30)
        assert reply.status_code == 401, (path, reply.text)
        assert reply.json()["error"]["parameter"] == "Authorization"
    bad = httpx.get(f"{keyed.url}/easel/jobs?limit=500", headers=A, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "limit"
    bad = httpx.get(f"{keyed.url}/easel/jobs?status=done", headers=A, timeout=30)
    assert bad.status_code == 400 and "queued" in bad.json()["error"]["message"]
    for query, parameter in (("limit=²", "limit"), ("after=no-such-job", "after")):
        bad = httpx.get(f"{keyed.url}/easel/jobs?{query}", headers=A, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["parameter"] == parameter
    unknown = httpx.get(f"{keyed.url}/easel/nothing-here", headers=A, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "notFound"


def test_a_task_id_names_the_job_on_every_route_and_repeats_idempotently(keyed: Server) -> None:
    first = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert first.status_code == 202 and first.json()["id"] == "my-job-1"
    again = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert again.status_code == 200 and again.json()["job"] == first.json()["job"]
    clash = submit(keyed, A, model=QUICK, task_id="my-job-1", prompt="another prompt")
    assert clash.status_code == 409 and clash.json()["error"]["parameter"] == "task_id"
    assert [name for name, _ in events(keyed, "my-job-1", A)][-1] == "end"
    shown = httpx.get(f"{keyed.url}/easel/jobs/my-job-1", headers=A, timeout=30).json()
    assert shown["status"] == "completed" and shown["prompt"] == "a heron"
    newer = submit(keyed, A, model=QUICK, prompt="after the heron").json()
    page = httpx.get(f"{keyed.url}/easel/jobs", params={"after": newer["id"], "limit": 1},
                     headers=A, timeout=30).json()["jobs"]
    assert [job["id"] for job in page] == ["my-job-1"]  # the cursor is any id of the job
    # Another caller's same task id is another job.
    theirs = submit(keyed, B, model=QUICK, task_id="my-job-1", prompt="a heron")
    assert theirs.status_code == 202 and theirs.json()["job"] != first.json()["job"]


def test_the_catalog_lists_every_model_id_by_tier_with_sizes_and_licence(keyed: Server) -> None:
    from easel.catalog import Catalog

    view = httpx.get(f"{keyed.url}/easel/models", headers=A, timeout=30).json()
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


def test_cancel_from_the_stream_and_from_easel_jobs(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = slow_server(make_server, tmp_path).start()
    log = srv.log.read_text()
    assert f"playground at {srv.url}/" in log
    assert "tier fast: flux2-klein-4b, stand-in easel/tiny-flux2 (weights absent)" in log
    running = submit(srv, {}, prompt="a lighthouse at dusk").json()
    queued = submit(srv, {}, prompt="a second job").json()  # waits behind the first
    env = {**os.environ, "EASEL_URL": srv.url, "COLUMNS": "200"}

    def easel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "easel.cli", "jobs", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    listed = easel("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [queued["id"], running["id"]]
    table = easel("list").stdout
    assert running["id"] in table and "a lighthouse at dusk" in table and "a second job" in table
    cancelled = easel("cancel", queued["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr

    # The running one: cancelled once its stream shows it denoising; the stream then ends.
    for name, data in events(srv, running["id"], {}):
        if name == "progress" and data["progress"]["step"] > 0 and not data["cancel_requested"]:
            reply = httpx.post(f"{srv.url}/easel/jobs/{running['id']}/cancel", timeout=30)
            assert reply.status_code == 200 and reply.json()["cancel_requested"]
        last = (name, data)
    assert last[0] == "end" and last[1]["status"] == "cancelled"
    assert last[1]["error"]["kind"] == "cancelled" and last[1]["outputs"][0]["url"] is None
    assert 0 < last[1]["progress"]["step"] < last[1]["progress"]["total"]

    shown = easel("show", running["id"])
    assert "cancelled" in shown.stdout and "a lighthouse at dusk" in shown.stdout
    cancelled_only = json.loads(easel("list", "--status", "cancelled", "--json").stdout)
    assert {j["id"] for j in cancelled_only} == {running["id"], queued["id"]}
    assert json.loads(easel("list", "--status", "completed", "--json").stdout) == []
    missing = easel("show", "no-such-job")
    assert missing.returncode == 1 and "no job no-such-job" in missing.stderr
    bad = easel("list", "--status", "done")
    assert bad.returncode == 1 and "status 'done' is not one of" in bad.stderr
