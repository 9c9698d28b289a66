"""The worker's threads, in-process (real store, fake engine): the images of a batch are
finished at the same time on the finishing threads, one failing image fails only its job, and
the engine runs at most two batches ahead of finishing: past that it claims nothing, and the
jobs wait in the queue (for any worker) until finishing catches up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from easel.domain.job import JobStatus
from easel.domain.outcomes import JobFailed
from easel.services.images.finishing import Finished
from easel.worker import BACKLOG_BATCHES
from tests.core.conftest import Core, submission


def wrap_finish(c: Core, before: Callable[[Any], None]) -> None:
    """The worker's finisher runs `before(request)` ahead of finishing each image."""
    finish = c.worker.finisher.finish

    def gated(pixels: Any, seed: int, request: Any, *args: Any) -> Finished:
        before(request)
        return finish(pixels, seed, request, *args)

    c.worker.finisher.finish = gated  # type: ignore[method-assign]


@contextmanager
def running(c: Core) -> Iterator[None]:
    c.worker.start()
    try:
        yield
    finally:
        c.worker.stop(timeout=30)


async def test_the_images_of_a_batch_are_finished_at_the_same_time(
    core: Callable[..., Core],
) -> None:
    c = core(finishing_threads=4)
    # Four images meet here; finished one after the other, the first would wait in vain.
    together = threading.Barrier(4, timeout=30)
    wrap_finish(c, lambda request: together.wait())
    with running(c):
        job = await c.runtime.jobs.run(submission(n=4, seed=1), timeout=60)
    assert job.status is JobStatus.COMPLETED and all(image.ready for image in job.images)
    assert [len(call.images) for call in c.engine.calls] == [4]
    sample = c.worker.metrics.registry.get_sample_value("easel_finishing_seconds_count")
    assert sample == 4


async def test_an_image_that_cannot_be_finished_fails_its_job_alone(
    core: Callable[..., Core],
) -> None:
    c = core(finishing_threads=2)

    def breaks(request: Any) -> None:
        if "BREAK" in request.prompt:
            raise ValueError("the finisher was told to fail")

    wrap_finish(c, breaks)
    with running(c):
        broken = asyncio.create_task(c.runtime.jobs.run(submission("BREAK", n=2), timeout=60))
        fine = asyncio.create_task(c.runtime.jobs.run(submission("fine", n=2), timeout=60))
        with pytest.raises(JobFailed) as failed:
            await broken
        job = await fine
    assert "could not store images" in failed.value.message
    assert job.status is JobStatus.COMPLETED and all(image.ready for image in job.images)


async def test_the_engine_waits_for_finishing_two_batches_behind(
    core: Callable[..., Core],
) -> None:
    c = core(batch_size=1, poll_interval=0.05)
    release = threading.Event()
    wrap_finish(c, lambda request: release.wait(60))
    registry = c.worker.metrics.registry
    jobs = [asyncio.create_task(c.runtime.jobs.run(submission(f"fox {i}"), timeout=60))
            for i in range(6)]
    async with asyncio.timeout(30):
        while await asyncio.to_thread(c.runtime.store.queued_count) < 6:
            await asyncio.sleep(0.01)
    with running(c):
        try:
            # The worker has run two batches, cannot finish them, and holds back.
            async with asyncio.timeout(30):
                while not registry.get_sample_value(
                        "easel_worker_waited_for_finishing_seconds_total"):
                    await asyncio.sleep(0.01)
            assert len(c.engine.calls) == BACKLOG_BATCHES == 2
            assert await asyncio.to_thread(c.runtime.store.queued_count) == 4
        finally:
            release.set()
        done = await asyncio.gather(*jobs)
    assert all(job.status is JobStatus.COMPLETED for job in done)
    assert len(c.engine.calls) == 6
