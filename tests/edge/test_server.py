"""The app's own routes, in-process: health, metrics, images with their content type, URLs
that expire with their image's lifetime (the wall clock moved, not waited for) and the sweeper
that deletes expired files."""

from __future__ import annotations

from collections.abc import Callable

from tests.edge.conftest import Edge
from tests.server_harness import inference


def test_livez_readyz_and_metrics(edge: Edge) -> None:
    assert edge.client.get("/livez").json() == {"status": "ok"}
    assert edge.client.get("/readyz").status_code == 200
    assert edge.runware([inference(numberResults=2)]).status_code == 200
    text = edge.client.get("/metrics").text
    for name in ('easel_jobs{state="completed"}', "easel_queue_depth",
                 "easel_images_generated_total", "easel_denoising_step_seconds_bucket",
                 "easel_engine_batch_seconds_bucket", 'route="/v1"'):
        assert name in text, name


def test_images_are_served_with_their_content_type(edge: Edge) -> None:
    for fmt, mime in (("PNG", "image/png"), ("WEBP", "image/webp"), ("JPG", "image/jpeg")):
        item = edge.runware([inference(outputFormat=fmt)]).json()["data"][0]
        response = edge.client.get(item["imageURL"])
        assert response.status_code == 200
        assert response.headers["content-type"] == mime
    assert edge.client.get("/images/nope.jpg").status_code == 404


def test_urls_expire_and_the_sweeper_deletes_files(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(image_ttl_seconds=2)
    item = edge.runware([inference()]).json()["data"][0]
    path = edge.settings.data_dir / "images" / f"{item['imageUUID']}.jpg"
    assert edge.client.get(item["imageURL"]).status_code == 200 and path.exists()
    long_lived = edge.runware([inference(ttl=600)]).json()["data"][0]
    edge.wall.advance(3)  # past the first image's two seconds
    assert edge.client.get(item["imageURL"]).status_code == 404
    assert edge.server.runtime.artifacts.sweep() == 1  # what the sweeper does on its interval
    assert not path.exists()
    assert edge.db("SELECT deleted FROM images WHERE image_id = ?", item["imageUUID"]) == [(1,)]
    assert edge.client.get(long_lived["imageURL"]).status_code == 200  # per-task ttl overrides


def _series(edge: Edge) -> int:
    """How many series /metrics exposes now (its sample lines)."""
    text = edge.client.get("/metrics").text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_callers_cannot_add_metric_series(edge: Edge) -> None:
    """Methods, paths and model ids a caller makes up are not labels: a second round of new
    ones adds no series to /metrics (each would otherwise add a histogram's 17)."""
    keyed = {"Authorization": "Bearer test-key"}

    def round_of(tag: str) -> None:
        for i in range(30):
            method = ("PROPFIND", "MKCOL", "PURGE", "BREW")[i % 4] + f"-{tag}{i}"
            for path in ("/v1", f"/{tag}-{i}/nothing", "/livez"):
                edge.client.request(method, path, headers=keyed)
            model = f"made-up-{tag}-{i}"
            edge.client.post(f"/api/v3/{model}", json={"prompt": "a fox"}, headers=keyed)
            edge.client.post(f"/v1beta/models/{model}:predict", headers=keyed,
                             json={"instances": [{"prompt": "a fox"}]})
            edge.client.post("/v1/images/generations", headers=keyed,
                             json={"model": model, "prompt": "a fox", "size": "64x64"})
            edge.runware([inference(model=model)])
            edge.client.get(f"/images/{model}.png")

    _series(edge)  # a first scrape: /metrics's own timing is a series too
    round_of("a")
    first = _series(edge)
    round_of("b")
    assert _series(edge) == first
    text = edge.client.get("/metrics").text
    assert 'method="other",route="/v1"' in text and 'route="unmatched"' in text


def test_metrics_answer_while_the_job_store_is_down(edge: Edge) -> None:
    """Exactly when an operator looks (it was a 500, every series lost): the process's own
    series still come, the store's are left out, and easel_job_store_up says why."""
    assert "easel_job_store_up 1.0" in edge.client.get("/metrics").text
    edge.db("ALTER TABLE jobs RENAME TO jobs_gone")  # the store stops answering
    edge.db("ALTER TABLE deliveries RENAME TO deliveries_gone")
    reply = edge.client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert "easel_job_store_up 0.0" in reply.text
    assert "easel_build_info" in reply.text and "easel_jobs{" not in reply.text
