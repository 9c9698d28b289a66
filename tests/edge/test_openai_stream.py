"""OpenAI's image stream (`stream: true`, `partial_images`), in-process on the fake engine: the
events as a server-sent-events client reads them. The official SDKs read the same stream from a
real server in tests/dialects/test_sdks_on_tiny.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from PIL import Image

from easel.domain.job import JobStatus
from tests.edge.conftest import KEY, Edge
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {KEY}"}
PATH = "/v1/images/generations"


def stream(edge: Edge, **fields: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The reply and its events' data, in order."""
    body = {"model": "google/imagen-4.0-fast-generate-001", "prompt": "a red fox in snow",
            "stream": True, **fields}
    events: list[dict[str, Any]] = []
    with edge.client.stream("POST", PATH, json=body, headers=AUTH) as reply:
        if reply.status_code != 200:
            reply.read()
            return reply, events
        for line in reply.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.split(":", 1)[1]))
    return reply, events


def picture(event: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(event["b64_json"])))


def test_two_partial_images_then_the_image(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge()
    reply, events = stream(edge, partial_images=2, output_format="png")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert [e["type"] for e in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert [e.get("partial_image_index") for e in events[:2]] == [0, 1]
    pictures = [picture(e) for e in events]
    assert all(p.size == (64, 64) and p.format == "PNG" for p in pictures)
    pixels = [p.tobytes() for p in pictures]
    assert len(set(pixels)) == 3  # each partial differs from the other and from the image
    for event in events:
        assert event["size"] == "64x64" and event["output_format"] == "png"
        assert event["background"] == "opaque" and isinstance(event["created_at"], int)
    assert set(events[-1]["usage"]) == {"input_tokens", "input_tokens_details",
                                        "output_tokens", "total_tokens"}
    job = edge.wait(reply.headers["x-easel-job-id"])
    assert job.status is JobStatus.COMPLETED and job.partials == 2


def test_a_slow_reader_still_gets_every_partial_image(make_edge: Callable[..., Edge]) -> None:
    """A stream read after its job has ended (a slow client) finds every round: a completed
    job's partial images stay as long as its images, and go with them."""
    edge = make_edge()
    artifacts = edge.server.runtime.artifacts
    reply, _ = stream(edge, partial_images=2, n=2)
    job = edge.wait(reply.headers["x-easel-job-id"])
    assert job.partials == 2
    kept = [edge.client.portal.call(artifacts.partial_bytes, job, image, round_)
            for image in job.images for round_ in range(2)]
    assert all(kept), "a partial image went before its image"
    assert len(list(edge.settings.images_dir.rglob("*partial*"))) == 4
    edge.wall.advance(7200)  # past every image's lifetime: the sweeper takes both
    artifacts.sweep(edge.wall())
    assert list(edge.settings.images_dir.rglob("*partial*")) == []


def test_several_images_each_get_their_partials_and_their_completed_event(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge()
    _, events = stream(edge, partial_images=1, n=2)
    kinds = [(e["type"].rsplit(".", 1)[1], e.get("partial_image_index")) for e in events]
    assert kinds == [("partial_image", 0), ("partial_image", 0), ("completed", None),
                     ("completed", None)]
    assert len({e["b64_json"] for e in events}) == 4


def test_no_partial_images_means_the_image_alone(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge()
    _, events = stream(edge)
    assert [e["type"] for e in events] == ["image_generation.completed"]


def test_partial_images_need_stream(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge()
    reply = edge.client.post(PATH, headers=AUTH, json={"prompt": "a fox", "partial_images": 2})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "partial_images"
    reply = edge.client.post(PATH, headers=AUTH, json={"prompt": "a fox", "stream": True,
                                                       "partial_images": 4})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "partial_images"


def test_a_failure_after_the_stream_began_is_an_error_event(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(FakeEngine(fail_on_prompt="explode"))
    reply, events = stream(edge, prompt="explode, please", partial_images=2)
    assert reply.status_code == 200
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "generation_failed"
    assert "fail" in events[-1]["error"]["message"]


def test_a_client_that_leaves_the_stream_leaves_the_job_running(
    make_edge: Callable[..., Edge],
) -> None:
    """Closing the stream is not a cancel (OpenAI documents none); the job completes and
    easel's API finds it by the id in x-easel-job-id."""
    edge = make_edge()
    body = {"prompt": "a fox", "stream": True, "partial_images": 3}
    with edge.client.stream("POST", PATH, json=body, headers=AUTH) as reply:
        job_id = reply.headers["x-easel-job-id"]
        next(reply.iter_lines())
    assert edge.wait(job_id).status is JobStatus.COMPLETED


def test_streams_count_against_the_callers_reply_budget(make_edge: Callable[..., Edge]) -> None:
    """Every event is base64: a stream reserves its estimated bytes from the start, so a caller
    with one stream open cannot open another past EASEL_REPLY_BYTES_PER_CALLER (429 naming
    `stream`); another caller can."""
    inside, go = threading.Event(), threading.Event()

    def hold(batch: Any, step: int) -> None:
        inside.set()
        assert go.wait(30)

    edge = make_edge(FakeEngine(on_step=hold), api_keys=[KEY, "other-key"],
                     reply_bytes_per_caller=100_000)
    body = {"prompt": "a fox", "stream": True, "partial_images": 2, "n": 2}
    first: dict[str, Any] = {}
    opened = threading.Thread(target=lambda: first.update(events=stream(edge, **body)[1]))
    opened.start()
    try:
        assert inside.wait(30)
        refused = edge.client.post(PATH, json={**body, "stream": True}, headers=AUTH)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["param"] == "stream"
        assert int(refused.headers["retry-after"]) >= 1
        with edge.client.stream("POST", PATH, json=body,
                                headers={"Authorization": "Bearer other-key"}) as other:
            assert other.status_code == 200  # (closing it leaves its job running)
    finally:
        go.set()
        opened.join(30)
    assert first["events"][-1]["type"] == "image_generation.completed"


async def test_a_quiet_stream_writes_keep_alives() -> None:
    """A stream whose job waits in the queue writes a comment line every interval, which
    proxies count as traffic and every SSE client (the openai SDK's included) skips."""
    from easel.api.dialects.common import with_keep_alives

    ready = asyncio.Event()

    async def updates() -> AsyncIterator[str]:
        await ready.wait()
        yield "the job"

    seen: list[str | None] = []
    async for item in with_keep_alives(updates(), 0.01):
        seen.append(item)
        if len(seen) == 3:
            ready.set()
    assert seen[:3] == [None, None, None] and seen[-1] == "the job"
