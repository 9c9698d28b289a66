"""The server end to end: real uvicorn subprocess, real SQLite, real tiny diffusers pipelines."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.server_harness import Server, inference, poll_until_done


def test_livez_readyz_and_metrics(server: Server) -> None:
    assert httpx.get(server.url + "/livez").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert server.post([inference(numberResults=2)]).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    for name in ('easel_jobs{state="completed"}', "easel_queue_depth",
                 "easel_images_generated_total", "easel_denoising_step_seconds_bucket",
                 "easel_engine_batch_seconds_bucket", 'route="/v1"'):
        assert name in text, name


def test_api_starts_before_the_model_is_loaded(make_server: Callable[..., Server]) -> None:
    srv = make_server(engine="tiny")  # torch and the models load while the API answers
    started = time.monotonic()
    srv.start(wait_ready=False)
    assert time.monotonic() - started < 15
    first = httpx.get(srv.url + "/readyz")
    assert first.status_code == 503 and first.json()["status"] == "not ready"
    srv.wait("/readyz", 120)


def test_images_are_served_with_their_content_type(server: Server) -> None:
    for fmt, mime in (("PNG", "image/png"), ("WEBP", "image/webp"), ("JPG", "image/jpeg")):
        item = server.post([inference(outputFormat=fmt)]).json()["data"][0]
        response = httpx.get(item["imageURL"])
        assert response.status_code == 200
        assert response.headers["content-type"] == mime
    assert httpx.get(server.url + "/images/nope.jpg").status_code == 404


def test_urls_expire_and_the_sweeper_deletes_files(make_server: Callable[..., Server]) -> None:
    srv = make_server(EASEL_IMAGE_TTL_SECONDS=2, EASEL_SWEEP_INTERVAL=0.5).start()
    item = srv.post([inference()]).json()["data"][0]
    path = srv.data_dir / "images" / f"{item['imageUUID']}.jpg"
    assert httpx.get(item["imageURL"]).status_code == 200 and path.exists()
    long_lived = srv.post([inference(ttl=600)]).json()["data"][0]
    time.sleep(3.5)
    assert httpx.get(item["imageURL"]).status_code == 404
    assert not path.exists()
    assert srv.db("SELECT deleted FROM images WHERE image_id = ?", item["imageUUID"]) == [(1,)]
    assert httpx.get(long_lived["imageURL"]).status_code == 200  # per-task ttl overrides


def test_compatible_jobs_share_one_engine_call_at_real_sizes(
    make_server: Callable[..., Server],
) -> None:
    """A slow 1024x1024 job keeps the worker busy while four 1408x768 jobs queue up; those four
    run as one engine batch. Real Imagen sizes, the fake engine's steps a fifth of a second."""
    srv = make_server(small=False, step_seconds=0.2, EASEL_BATCH_SIZE=4).start()
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
    srv = make_server(small=False, EASEL_LEASE_SECONDS=2)
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
