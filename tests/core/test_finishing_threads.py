"""The worker's threads, in-process (real store, fake engine): the images of a batch are
finished at the same time on the finishing threads, one failing image fails only its job (a
full disk sends it back to the queue), the engine runs at most two batches ahead of finishing
(past that it claims nothing, and the jobs wait in the queue for any worker), and a stopping
worker keeps the leases of the jobs it is still finishing."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from easel.domain.job import JobStatus
from easel.domain.outcomes import JobFailed
from easel.services.images.finishing import Finished
from easel.store.schema import jobs as jobs_table
from easel.worker import BACKLOG_BATCHES
from tests.core.conftest import Core, submission
from tests.fakes import FakeEngine


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
    broken = asyncio.create_task(c.runtime.jobs.run(submission("BREAK", n=2), timeout=60))
    fine = asyncio.create_task(c.runtime.jobs.run(submission("fine", n=2), timeout=60))
    await queued(c, 2)  # both queued before the worker starts: one batch
    with running(c):
        with pytest.raises(JobFailed) as failed:
            await broken
        job = await fine
    assert "could not store images" in failed.value.message
    assert job.status is JobStatus.COMPLETED and all(image.ready for image in job.images)
    assert [len(call.images) for call in c.engine.calls] == [4]


async def test_a_full_disk_sends_the_job_back_to_the_queue(core: Callable[..., Core]) -> None:
    c = core(finishing_threads=2, storage_retry_seconds=0.05)
    full = [True]

    def disk_full_once(request: Any) -> None:
        if full[0]:
            full[0] = False
            raise OSError(errno.ENOSPC, "No space left on device")

    wrap_finish(c, disk_full_once)
    with running(c):
        job = await c.runtime.jobs.run(submission(seed=5), timeout=60)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1  # the disk's fault, not its
    assert len(c.engine.calls) == 2  # run again once the disk took writes again


async def queued(c: Core, count: int) -> None:
    async with asyncio.timeout(30):
        while await asyncio.to_thread(c.runtime.store.queued_count) < count:
            await asyncio.sleep(0.01)


async def held_back(c: Core) -> None:
    """Until the worker has waited for finishing: two batches in it, no room for a third."""
    metrics = c.worker.metrics.registry
    async with asyncio.timeout(30):
        while not metrics.get_sample_value("easel_worker_waited_for_finishing_seconds_total"):
            await asyncio.sleep(0.01)


async def test_the_engine_waits_for_finishing_two_batches_behind(
    core: Callable[..., Core],
) -> None:
    c = core(batch_size=1, poll_interval=0.05)
    release = threading.Event()
    wrap_finish(c, lambda request: release.wait(60))
    jobs = [asyncio.create_task(c.runtime.jobs.run(submission(f"fox {i}"), timeout=60))
            for i in range(6)]
    await queued(c, 6)
    with running(c):
        try:
            await held_back(c)  # two batches run, neither finished
            assert len(c.engine.calls) == BACKLOG_BATCHES == 2
            assert await asyncio.to_thread(c.runtime.store.queued_count) == 4
        finally:
            release.set()
        done = await asyncio.gather(*jobs)
    assert all(job.status is JobStatus.COMPLETED for job in done)
    assert len(c.engine.calls) == 6


async def test_a_failed_batch_run_again_one_by_one_keeps_the_bound(
    core: Callable[..., Core],
) -> None:
    """One job breaks its batch's engine call; its batch-mates, run again one at a time, still
    wait for finishing two batches behind."""
    c = core(FakeEngine(fail_on_prompt="BREAK"), batch_size=4, poll_interval=0.05)
    release = threading.Event()
    wrap_finish(c, lambda request: release.wait(60))
    jobs = [asyncio.create_task(c.runtime.jobs.run(submission(prompt), timeout=60))
            for prompt in ("BREAK", "fox 1", "fox 2", "fox 3")]
    await queued(c, 4)  # one batch of four
    with running(c):
        try:
            await held_back(c)
            # The batch, the breaking job alone, then two jobs in finishing and no third.
            assert [len(call.images) for call in c.engine.calls] == [4, 1, 1, 1]
        finally:
            release.set()
        done = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(done[0], JobFailed)
    assert all(job.status is JobStatus.COMPLETED for job in done[1:])  # type: ignore[union-attr]
    assert len(c.engine.calls) == 5


async def test_a_stopping_worker_keeps_the_leases_of_the_images_it_finishes(
    core: Callable[..., Core],
) -> None:
    """stop() waits for the batches in finishing; meanwhile their leases are renewed, so no
    other worker takes those jobs over (the store's clock moves past a lease while it waits)."""
    c = core(batch_size=1, poll_interval=0.05, lease_seconds=0.9)
    now = [1_000_000.0]
    c.runtime.store.clock = lambda: now[0]
    release = threading.Event()
    wrap_finish(c, lambda request: release.wait(60))
    runs = [asyncio.create_task(c.runtime.jobs.run(submission(f"fox {i}"), timeout=60))
            for i in range(3)]
    await queued(c, 3)
    c.worker.start()
    stopping = threading.Thread(target=c.worker.stop)
    try:
        await held_back(c)
        stopping.start()
        now[0] += 60  # every lease taken before this has run out
        async with asyncio.timeout(30):
            while len(await asyncio.to_thread(leased_past, c, now[0])) < BACKLOG_BATCHES:
                await asyncio.sleep(0.01)
    finally:
        release.set()
        await asyncio.to_thread(stopping.join, 60)
    finished = [job for job in await asyncio.gather(*[
        c.runtime.jobs.wait(run_id, timeout=0) for run_id in await job_ids(c)])
        if job.status is JobStatus.COMPLETED]
    assert len(finished) == BACKLOG_BATCHES
    assert await asyncio.to_thread(c.runtime.store.queued_count) == 1  # never claimed
    for run in runs:
        run.cancel()  # the one never claimed waits on; the others are done
    await asyncio.gather(*runs, return_exceptions=True)


def leased_past(c: Core, moment: float) -> list[str]:
    with c.runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(jobs_table.c.id)
                            .where(jobs_table.c.lease_expires_at > moment)).all()
    return [row.id for row in rows]


async def job_ids(c: Core) -> list[str]:
    def read() -> list[str]:
        with c.runtime.store.engine.connect() as conn:
            return [row.id for row in conn.execute(sa.select(jobs_table.c.id)).all()]
    return await asyncio.to_thread(read)
