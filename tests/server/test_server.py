"""The server as a process: it answers before its models load, batches compatible jobs, and a
SIGKILL mid-job loses nothing. Its routes are tested in-process (tests/edge/test_server.py)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import httpx
from PIL import Image

from easel.services.images.inputs import input_keys
from tests.edge.test_images_in import data_uri, half_mask, picture, png
from tests.server_harness import Server, inference, poll_until_done


def test_api_starts_before_the_model_is_loaded(make_server: Callable[..., Server]) -> None:
    srv = make_server(engine="tiny")  # torch and the models load while the API answers
    started = time.monotonic()
    srv.start(wait_ready=False)
    assert time.monotonic() - started < 15
    first = httpx.get(srv.url + "/readyz")
    assert first.status_code == 503 and first.json()["status"] == "not ready"
    srv.wait("/readyz", 120)


def test_compatible_jobs_share_one_engine_call_at_real_sizes(
    make_server: Callable[..., Server],
) -> None:
    """A slow 1024x1024 job keeps the worker busy while four 1408x768 jobs queue up; those four
    run as one engine batch. Real Imagen sizes, the fake engine's steps a twentieth of a second."""
    srv = make_server(small=False, step_seconds=0.05, EASEL_BATCH_SIZE=4).start()
    blocker = inference(width=1024, height=1024, deliveryMethod="async")
    assert srv.post([blocker]).status_code == 200
    wide = [inference(width=1408, height=768, deliveryMethod="async", positivePrompt=f"fox {i}")
            for i in range(4)]
    assert srv.post(wide).status_code == 200
    for task in [blocker, *wide]:
        items = poll_until_done(srv, task["taskUUID"])
        image = httpx.get(items[0]["imageURL"])
        assert image.status_code == 200
    batch_ids = {srv.db("SELECT batch_id FROM jobs WHERE task_id = ?", t["taskUUID"])[0][0]
                 for t in wide}
    assert len(batch_ids) == 1
    blocker_batch = srv.db("SELECT batch_id FROM jobs WHERE task_id = ?", blocker["taskUUID"])[0][0]
    assert blocker_batch not in batch_ids


def test_sigkill_mid_job_then_restart_completes_once_with_same_ids(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(small=False, step_seconds=0.2, EASEL_LEASE_SECONDS=2)  # a 4 s job
    srv.start()
    task = inference(width=1024, height=1024, numberResults=4, deliveryMethod="async", seed=11)
    ack = srv.post([task]).json()["data"][0]
    assert ack == {"taskType": "imageInference", "taskUUID": task["taskUUID"]}
    before = [i["imageUUID"] for i in srv.post(
        [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()["data"]]
    deadline = time.monotonic() + 60
    status_sql = "SELECT status FROM jobs WHERE task_id = ?"
    while srv.db(status_sql, task["taskUUID"]) != [("processing",)]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    srv.kill()
    assert srv.db("SELECT status, attempts FROM jobs")[0] == ("processing", 1)

    srv.start()
    items = poll_until_done(srv, task["taskUUID"])
    assert [i["imageUUID"] for i in items] == before
    assert [i["seed"] for i in items] == [11, 12, 13, 14]
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 2)]
    for item in items:
        assert httpx.get(item["imageURL"]).status_code == 200
    files = sorted(p.name for p in (srv.data_dir / "images").iterdir())
    assert files == sorted(f"{i}.jpg" for i in before)  # re-run overwrote, no orphans

    srv.stop()  # and a clean restart does not run it again
    srv.start()
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 2)]


def test_sigkill_mid_edit_then_restart_completes_it_from_its_kept_inputs(
    make_server: Callable[..., Server],
) -> None:
    """An accepted inpainting job survives kill -9: its image and mask, kept in the image
    store under its id from before it was acknowledged, are there for the restarted worker,
    and go once it completes."""
    srv = make_server(small=False, step_seconds=0.2, EASEL_LEASE_SECONDS=2)
    srv.start()
    task = inference(model="google:2@1", width=1024, height=1024, deliveryMethod="async",
                     seedImage=data_uri(png(picture())), maskImage=data_uri(png(half_mask())),
                     strength=0.9)
    assert "errors" not in srv.post([task]).json()
    (job_id,) = srv.db("SELECT id FROM jobs")[0]
    kept = [srv.data_dir / "images" / key for key in input_keys(job_id)]
    deadline = time.monotonic() + 60
    while srv.db("SELECT status FROM jobs") != [("processing",)]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    srv.kill()
    assert all(path.exists() for path in kept)

    srv.start()
    (item,) = poll_until_done(srv, task["taskUUID"])
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 2)]
    assert httpx.get(item["imageURL"]).status_code == 200
    assert not any(path.exists() for path in kept)  # the inputs lived as long as the job


def test_sigkill_mid_upscale_then_restart_completes_it_from_its_kept_input(
    make_server: Callable[..., Server],
) -> None:
    """An accepted upscale survives kill -9 the same way: its input is kept under its id, the
    restarted worker enlarges it, and it goes once the job completes."""
    srv = make_server(small=False, step_seconds=1.0, EASEL_LEASE_SECONDS=2)
    srv.start()
    task = {"taskType": "upscale", "taskUUID": "0b7e3c1a-5d2f-4e8a-9c61-3f4a2b1c0d9e",
            "inputImage": data_uri(png(picture())), "upscaleFactor": 4,
            "deliveryMethod": "async"}
    assert "errors" not in srv.post([task]).json()
    (job_id,) = srv.db("SELECT id FROM jobs")[0]
    kept = srv.data_dir / "images" / input_keys(job_id)[0]
    deadline = time.monotonic() + 60
    while srv.db("SELECT status FROM jobs") != [("processing",)]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    srv.kill()
    assert kept.exists()

    srv.start()
    (item,) = poll_until_done(srv, task["taskUUID"])
    assert item["taskType"] == "upscale"
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 2)]
    image = httpx.get(item["imageURL"])
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (384, 256)
    assert not kept.exists()
